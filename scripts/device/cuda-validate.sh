#!/usr/bin/env bash
# CUDA validation on the GPU machine (issue 15, check 2). Runs there from the repository root; no .NET SDK needed:
# the app comes from make-cuda-bundle.sh as parts under artifacts/device/cuda/ (git-ignored, carried one or two per
# transfer), and everything it writes for the caller goes to $OUT.
#
#   bash scripts/device/cuda-validate.sh stage              keep the parts that came with this transfer
#   bash scripts/device/cuda-validate.sh sample             stage, join, verify, unpack; validate the sample on CUDA
#   bash scripts/device/cuda-validate.sh llama [--layers N] build the big model (make_llama.py), merge it with our
#                                                           tool, validate on CUDA
#   bash scripts/device/cuda-validate.sh all [--layers N]   sample, then llama
#
# Parts are kept in $ONNXLORA_STAGE (default /tmp/onnxlora-cuda), which survives between commands that follow each
# other closely on the same machine; every part is checked against SHA256SUMS when staged, the joined archive
# again before it is unpacked. $ONNXLORA_CARRIED (default artifacts/device/cuda) is where the carried parts are
# looked for, $ONNXLORA_PYTHON the Python with torch/transformers/peft (default python3).
#
# $OUT receives at most 8 files: cuda-validate.log, env.txt (GPU, driver, libraries found, what the CUDA provider
# links against), sample-validation.json/.html, llama-validation.json/.html, summary.json (one line per run:
# provider used, gates, merged/base and unmerged/merged latency medians), llama.json (make_llama.py's summary).
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$repo/scripts/device/lib.sh"
stage="${ONNXLORA_STAGE:-/tmp/onnxlora-cuda}"
out="${OUT:-$repo/artifacts/device/cuda-results}"
carried="${ONNXLORA_CARRIED:-$repo/artifacts/device/cuda}"
command="${1:-}"
shift || true
layers=8
while [[ $# -gt 0 ]]; do
    case "$1" in
        --layers) layers="$2"; shift 2 ;;
        *) echo "cuda-validate: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
mkdir -p "$out" "$stage/parts"
log="$out/cuda-validate.log"
exec > >(tee -a "$log") 2>&1
echo "== cuda-validate $command $(date -u +%FT%TZ) on $(hostname)"

python="${ONNXLORA_PYTHON:-python3}"
app="$stage/app"
me="$app/merge-export/merge-export"

do_stage() {
    if [[ -f "$carried/SHA256SUMS" ]]; then
        if [[ -f "$stage/parts/SHA256SUMS" ]] && ! cmp -s "$carried/SHA256SUMS" "$stage/parts/SHA256SUMS"; then
            echo "stage: the carried SHA256SUMS belongs to another build; dropping the staged parts"
            rm -f "$stage/parts"/part-* "$stage/parts/SHA256SUMS"
        fi
        cp "$carried/SHA256SUMS" "$stage/parts/SHA256SUMS"
        [[ -f "$carried/CONTENTS.txt" ]] && cp "$carried/CONTENTS.txt" "$stage/parts/CONTENTS.txt"
        local part
        for part in "$carried"/part-*; do
            [[ -f "$part" ]] || continue
            cp "$part" "$stage/parts/"
        done
    fi
    if [[ ! -f "$stage/parts/SHA256SUMS" ]]; then
        echo "stage: no SHA256SUMS carried or staged (carry artifacts/device/cuda/SHA256SUMS with every part)" >&2
        return 2
    fi
    local absent total
    absent="$(verify_parts "$stage/parts")" || return 1
    total="$(grep -c ' part-' "$stage/parts/SHA256SUMS")"
    echo "stage: $(( total - $(echo -n "$absent" | grep -c '^' ) )) of $total parts staged in $stage/parts (verified)"
    [[ -z "$absent" ]] || echo "stage: still missing: $(echo "$absent" | tr '\n' ' ')"
}

do_unpack() {
    local whole
    whole="$(awk '$2 == "whole" { print $1 }' "$stage/parts/SHA256SUMS")"
    if [[ -f "$app/.sha256" && "$(cat "$app/.sha256")" == "$whole" ]]; then
        echo "unpack: $app is already this archive"
        return 0
    fi
    join_parts "$stage/parts" "$stage/cuda-app.tar.xz" || return 1
    rm -rf "$app"
    mkdir -p "$app"
    if command -v xz >/dev/null 2>&1; then
        tar -C "$app" -xJf "$stage/cuda-app.tar.xz" || return 1
    else
        # Python's tarfile reads .tar.xz without an xz binary.
        "$python" -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
t.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))' "$stage/cuda-app.tar.xz" "$app" || return 1
    fi
    rm -f "$stage/cuda-app.tar.xz"
    echo "$whole" > "$app/.sha256"
    echo "unpack: $(du -sh "$app" | cut -f1) in $app"
}

do_env() {
    # pip's nvidia-* wheels (cublas, cudnn, cuda-runtime, curand, ...) put their .so files under nvidia/**/lib.
    local dirs
    dirs="$("$python" - <<'PY'
import os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
found = set()
for root in list(nvidia.__path__):
    for dirpath, _, files in os.walk(root):
        if any(".so" in f for f in files):
            found.add(dirpath)
print(":".join(sorted(found)))
PY
)"
    export LD_LIBRARY_PATH="$app/merge-export${dirs:+:$dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
    {
        echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi failed"
        echo "== LD_LIBRARY_PATH"; echo "$LD_LIBRARY_PATH" | tr ':' '\n'
        echo "== what the CUDA provider links against"; ldd "$app/merge-export/libonnxruntime_providers_cuda.so" 2>&1
        echo "== cuDNN (loaded at run time)"; find ${dirs//:/ } -maxdepth 1 -name 'libcudnn*.so*' 2>/dev/null | head -20
        echo "== staged"; cat "$stage/parts/CONTENTS.txt" 2>/dev/null | head -5
        echo "== python"; "$python" -c 'import torch, sys; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' 2>&1
    } > "$out/env.txt"
    if ldd "$app/merge-export/libonnxruntime_providers_cuda.so" | grep -q 'not found'; then
        echo "env: the CUDA provider has unresolved libraries (see env.txt):"
        ldd "$app/merge-export/libonnxruntime_providers_cuda.so" | grep 'not found'
    fi
}

# validate NAME ARGS...: merge-export validate on CUDA (no CPU fallback), reports copied to $OUT/NAME-validation.*
validate() {
    local name="$1"; shift
    local report="$stage/reports/$name" code
    rm -rf "$report"
    local t0=$SECONDS
    "$me" validate "$@" --device cuda --no-cpu-fallback --report "$report" --force
    code=$?
    echo "validate $name: exit $code in $((SECONDS - t0)) s"
    cp "$report/validation.json" "$out/$name-validation.json" 2>/dev/null
    cp "$report/validation.html" "$out/$name-validation.html" 2>/dev/null
    "$python" - "$report/validation.json" "$name" "$code" >> "$out/summary.json" <<'PY'
import json, sys
path, name, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    r = json.load(open(path))
except OSError as e:
    print(json.dumps({"run": name, "exit": code, "error": str(e)}))
    raise SystemExit(0)
lat = r.get("latency") or {}
print(json.dumps({
    "run": name, "exit": code, "status": r.get("status"), "provider": r["provider"]["used"],
    "fallback": r["provider"].get("fallbackReason"), "onnxruntime": r.get("onnxRuntimeVersion"),
    "gates": {g["gate"]: g["passed"] for g in r.get("gates", [])},
    "comparisons": {c["name"]: {o["name"]: {"maxAbs": o["maxAbsError"], "top1": o.get("top1Agreement")}
                                for o in c["outputs"]} for c in r.get("comparisons", [])},
    "binding": lat.get("binding"),
    "ratios": {x["name"]: {"median": x["median"], "p10": x["p10"], "p90": x["p90"], "pairs": x["pairs"]}
               for x in lat.get("ratios", [])},
    "p50Ms": {m["role"]: m["p50Ms"] for m in lat.get("models", [])},
    "warnings": r.get("warnings"),
}))
PY
    return $code
}

run_sample() {
    do_stage || return $?
    do_unpack || return $?
    do_env
    "$me" --version
    validate sample --merged "$app/sample/lora-merged.onnx" --unmerged "$app/sample/lora-unmerged.onnx" \
        --base "$app/sample/base.onnx" --batch 4 --seq 64 --warmup 10 --runs 200
}

run_llama() {
    [[ -x "$me" ]] || { do_stage && do_unpack || return $?; }
    do_env
    local work="$stage/llama" t0=$SECONDS code
    rm -rf "$work"
    "$python" "$repo/scripts/device/make_llama.py" --out "$work" --layers "$layers" || return $?
    cp "$work/llama.json" "$out/llama.json"
    echo "llama: built in $((SECONDS - t0)) s"
    t0=$SECONDS
    # Our ONNX -> ONNX merge of PEFT's adapter into the torch.onnx export of the base model.
    "$me" merge --model "$work/base/model.onnx" --adapter "$work/adapter" --base-checkpoint "$work/checkpoint" \
        --out "$work/merged/model.onnx" --force
    code=$?
    echo "merge: exit $code in $((SECONDS - t0)) s"
    [[ $code -eq 0 ]] || return $code
    validate llama --merged "$work/merged/model.onnx" --unmerged "$work/unmerged/model.onnx" \
        --base "$work/base/model.onnx" --batch 1 --seq 128 --warmup 5 --runs 50 --max-latency-ratio 1.01
}

status=0
case "$command" in
    stage) do_stage; status=$? ;;
    sample) run_sample; status=$? ;;
    llama) run_llama; status=$? ;;
    all) run_sample; status=$?; run_llama; s=$?; [[ $status -ne 0 ]] || status=$s ;;
    *) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 2 ;;
esac
echo "== cuda-validate $command: exit $status"
exit $status
