#!/usr/bin/env bash
# Interop check on the GPU machine (issue 15, check 1): one command, run from the repository root there, with the
# bundle from make-bundle.sh carried along (artifacts/device/bundle, git-ignored). Results go to $OUT:
#   interop.json, interop.md, interop.log, peft-fixtures.tar.gz
# Every module interop.py can use is required here (a missing one is an error row, not a skip).
# Extra arguments go to interop.py (e.g. --torch-device cuda, --no-fixtures).
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${OUT:-$repo/artifacts/device/interop-results}"
bundle="${ONNXLORA_BUNDLE:-$repo/artifacts/device/bundle}"
mkdir -p "$out"
python3 "$repo/scripts/device/interop.py" --bundle "$bundle" --out "$out" \
    --require numpy,onnx,onnxruntime,torch,transformers,peft,safetensors "$@" 2>&1 | tee "$out/interop.log"
exit "${PIPESTATUS[0]}"
