#!/usr/bin/env bash
# Installs the system packages OnnxLora's build and tests use, when missing (Debian/Ubuntu):
#   g++, patchelf   the TorchSharp compat step (build/torchsharp-compat) on pre-GCC-13 C++ runtimes, and its MKL CPU
#                   shim (mkl_cpu.sh, gcc: g++ brings it) on x86-64
#   python3-onnx    the reference ONNX checker used by the export tests
#   chromium        renders the HTML validation report in a test
#   time            /usr/bin/time, which the hostile-input tests use to bound peak memory
# Nothing is installed when everything is already there.
set -euo pipefail
packages=(g++ patchelf binutils python3-onnx chromium time)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing ${missing[*]} and no apt-get; install them with your package manager." >&2
    exit 1
fi
sudo_cmd=()
[[ "$(id -u)" == 0 ]] || sudo_cmd=(sudo)
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
