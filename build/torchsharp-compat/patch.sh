#!/usr/bin/env bash
# TorchSharp compatibility step for older Linux C++ runtimes (see README, "TorchSharp on Debian 12").
# Usage: patch.sh OUTPUT_DIR TOOL_CACHE_DIR
# Patches the copy of libLibTorchSharp.so inside OUTPUT_DIR (never the NuGet cache) when, and only
# when, the system libstdc++ lacks GLIBCXX_3.4.32. Idempotent. Prints one line saying what it did.
set -euo pipefail
out_dir="$1"
cache_dir="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shim_name="libonnxlora_iosinit.so"
symbol="_ZSt21ios_base_library_initv"
version="GLIBCXX_3.4.32"

[[ "$(uname -s)" == "Linux" ]] || exit 0
lib=""
for candidate in "$out_dir/libLibTorchSharp.so" "$out_dir/runtimes/linux-x64/native/libLibTorchSharp.so"; do
    if [[ -f "$candidate" ]]; then lib="$candidate"; break; fi
done
[[ -n "$lib" ]] || exit 0

# ONNXLORA_LIBSTDCXX names the C++ runtime to judge by (tests use it to check the "not needed" path).
libstdcxx="${ONNXLORA_LIBSTDCXX:-}"
[[ -n "$libstdcxx" ]] || libstdcxx="$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')"
[[ -n "$libstdcxx" ]] || libstdcxx="$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6/ {print $NF; exit}')"
# ONNXLORA_COMPAT_FORCE=1 patches regardless of this machine (used when packing the .NET tool, whose
# package must load on older systems than the one it was packed on).
if [[ "${ONNXLORA_COMPAT_FORCE:-0}" != "1" && -n "$libstdcxx" ]] && grep -qa "$version" "$libstdcxx"; then
    echo "TorchSharp compat: $libstdcxx provides $version; $lib left untouched."
    exit 0
fi

lib_dir="$(dirname "$lib")"
if readelf -d "$lib" 2>/dev/null | grep -q "\[$shim_name\]" && [[ -f "$lib_dir/$shim_name" ]]; then
    exit 0  # already patched
fi

for tool in g++ gcc patchelf readelf; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error OLCOMPAT1: TorchSharp compat: this system's libstdc++ (${libstdcxx:-not found}) lacks $version, which $lib needs, and '$tool' is not installed to patch it. Install g++ and patchelf (the README's setup command does)." >&2
        exit 1
    fi
done

mkdir -p "$cache_dir"
if [[ ! -f "$cache_dir/$shim_name" || "$here/iosinit_shim.cpp" -nt "$cache_dir/$shim_name" ]]; then
    g++ -shared -fPIC -O2 -o "$cache_dir/$shim_name.tmp" "$here/iosinit_shim.cpp"
    mv -f "$cache_dir/$shim_name.tmp" "$cache_dir/$shim_name"
fi
if [[ ! -x "$cache_dir/weaken_verneed" || "$here/weaken_verneed.c" -nt "$cache_dir/weaken_verneed" ]]; then
    gcc -O2 -o "$cache_dir/weaken_verneed.tmp" "$here/weaken_verneed.c"
    mv -f "$cache_dir/weaken_verneed.tmp" "$cache_dir/weaken_verneed"
fi

# Work on a private copy, then rename over the output copy: this breaks any hard link to the
# NuGet cache and never leaves a half-patched library under the final name.
tmp="$lib.onnxlora-compat.tmp"
cp -f "$lib" "$tmp"
"$cache_dir/weaken_verneed" "$tmp" "$version"
patchelf --clear-symbol-version "$symbol" "$tmp"
patchelf --add-needed "$shim_name" "$tmp"
cp -f "$cache_dir/$shim_name" "$lib_dir/$shim_name"
mv -f "$tmp" "$lib"
if [[ "${ONNXLORA_COMPAT_FORCE:-0}" == "1" ]]; then
    reason="patching is forced (a .NET tool package must load on older systems)"
else
    reason="${libstdcxx:-the system libstdc++} lacks $version"
fi
echo "TorchSharp compat: $reason; patched $lib (weak $version requirement, unversioned $symbol, NEEDED $shim_name beside it)."
