#!/usr/bin/env bash
# MKL CPU-dispatch step (see mkl_cpu_shim.c and README, "MKL on non-Intel CPUs").
# Usage: mkl_cpu.sh OUTPUT_DIR TOOL_CACHE_DIR
# In OUTPUT_DIR's copy of libc10.so (never the NuGet cache) adds a NEEDED entry for libonnxlora_mklcpu.so, built
# here and put beside it, when the libtorch_cpu.so beside it contains oneMKL. x86-64 Linux only. Idempotent.
# It only changes speed, so missing tools are a warning, not an error. Prints one line when it does something.
set -euo pipefail
out_dir="$1"
cache_dir="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shim_name="libonnxlora_mklcpu.so"
symbol="mkl_serv_intel_cpu_true"

[[ "$(uname -s)" == "Linux" && "$(uname -m)" == "x86_64" ]] || exit 0
lib_dir=""
for candidate in "$out_dir" "$out_dir/runtimes/linux-x64/native"; do
    if [[ -f "$candidate/libc10.so" && -f "$candidate/libtorch_cpu.so" ]]; then lib_dir="$candidate"; break; fi
done
[[ -n "$lib_dir" ]] || exit 0
c10="$lib_dir/libc10.so"

for tool in gcc patchelf readelf; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "warning OLMKLCPU1: MKL CPU shim: '$tool' is not installed, so $c10 is left as shipped and MKL keeps its generic kernels on non-Intel CPUs (install gcc and patchelf; the README's setup command does)."
        exit 0
    fi
done

mkdir -p "$cache_dir"
if [[ ! -f "$cache_dir/$shim_name" || "$here/mkl_cpu_shim.c" -nt "$cache_dir/$shim_name" ]]; then
    gcc -shared -fPIC -O2 -o "$cache_dir/$shim_name.tmp" "$here/mkl_cpu_shim.c" -ldl
    mv -f "$cache_dir/$shim_name.tmp" "$cache_dir/$shim_name"
fi

if readelf -d "$c10" 2>/dev/null | grep -q "\[$shim_name\]"; then
    # Already patched: refresh the shim only if it changed.
    cmp -s "$cache_dir/$shim_name" "$lib_dir/$shim_name" || cp -f "$cache_dir/$shim_name" "$lib_dir/$shim_name"
    exit 0
fi
# The shim only makes sense where libtorch_cpu.so carries MKL and calls that vendor check through its PLT.
# (grep -c reads all of readelf's output: with -q and pipefail an early exit would fail readelf with SIGPIPE.)
if [[ "$(readelf -W -r "$lib_dir/libtorch_cpu.so" 2>/dev/null | grep -c "JUMP_SLOT .* $symbol + 0")" == "0" ]]; then
    echo "MKL CPU shim: $lib_dir/libtorch_cpu.so has no PLT call to $symbol (no oneMKL?); left untouched."
    exit 0
fi

# Work on a private copy, then rename over the output copy: this breaks any hard link to the NuGet cache and
# never leaves a half-patched library under the final name.
tmp="$c10.onnxlora-mklcpu.tmp"
cp -f "$c10" "$tmp"
patchelf --add-needed "$shim_name" "$tmp"
cp -f "$cache_dir/$shim_name" "$lib_dir/$shim_name"
mv -f "$tmp" "$c10"
echo "MKL CPU shim: patched $c10 (NEEDED $shim_name beside it: oneMKL in libtorch_cpu.so takes its AVX2/AVX-512 kernels on non-Intel x86-64 CPUs too)."
