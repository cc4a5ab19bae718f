#!/usr/bin/env bash
# Builds the interop bundle that scripts/device/run-interop.sh checks on the GPU machine: everything in it is
# written by OUR tool (merge-export), so Python transformers / PEFT there can be asked to read it.
#
#   bash scripts/device/make-bundle.sh [--out DIR] [--max-mib N] [--steps N]
#
#   --out DIR      bundle folder, replaced if it exists (default: artifacts/device/bundle, git-ignored)
#   --max-mib N    fail when the bundle is larger (default 48: the device takes 64 MiB per transfer,
#                  and the repository's tracked files travel in the same transfer)
#   --steps N      training steps per adapter (default 6: the adapters only need non-zero weights)
#
# The tool is `dotnet tools/MergeExport/bin/Release/net10.0/merge-export.dll` (build it first with
# `dotnet build tools/MergeExport -c Release`); MERGE_EXPORT="dotnet /path/merge-export.dll" overrides it.
#
# Layout (manifest.json lists every file with its size and sha256, the adapters and what was made of each):
#   sample/                    the embedded sample checkpoint (merge-export sample)
#   adapters/<name>/           PEFT adapters: lora, rslora, dora (merge-export train), cat, regex (see below)
#   merged/<name>/             each adapter merged into the sample checkpoint (merge-export merge)
#   onnx/base.onnx             the sample exported without adapter
#   onnx/<name>-unmerged.onnx  LoRA branches as separate nodes (lora, rslora, dora)
#   onnx/<name>-merged.onnx    the merged checkpoint exported (lora, dora)
#   inputs.json                fixed input ids + attention mask, in merge-export validate --inputs format
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$repo/scripts/device/lib.sh"
out="$repo/artifacts/device/bundle"
max_mib=48
steps=6
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --max-mib) max_mib="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "make-bundle: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
if [[ -n "${MERGE_EXPORT:-}" ]]; then
    read -r -a tool <<< "$MERGE_EXPORT"
else
    dll="$repo/tools/MergeExport/bin/Release/net10.0/merge-export.dll"
    if [[ ! -f "$dll" ]]; then
        echo "make-bundle: $dll not found; build it first: dotnet build tools/MergeExport -c Release" >&2
        exit 2
    fi
    tool=(dotnet "$dll")
fi
me() { "${tool[@]}" --quiet "$@"; }

start=$SECONDS
rm -rf "$out"
mkdir -p "$out/adapters" "$out/merged" "$out/onnx"
out="$(cd "$out" && pwd)"
cd "$out"

me sample --out sample
data=sample/task.jsonl
train() { me train --model sample --data "$data" --steps "$steps" --batch 4 --threads 1 "$@"; }
# Kinds the trainer writes: plain LoRA, rsLoRA (alpha/sqrt(r)) on every linear layer, DoRA (magnitude vectors).
train --out adapters/lora --rank 8 --alpha 16 --seed 11
train --out adapters/rslora --rslora --rank 16 --alpha 8 --targets all-linear --seed 12
train --out adapters/dora --dora --rank 4 --alpha 8 --targets q_proj k_proj v_proj o_proj --seed 13
# target_modules as one full-match regex string (PEFT re.fullmatch semantics).
train --out adapters/regex --rank 4 --alpha 4 --targets 'model\.layers\.[13]\.mlp\.(gate_proj|up_proj)' --seed 14
# What the combiner writes: cat of ranks 8 (q,v) and 16 (all linear) gives per-module ranks, i.e.
# rank_pattern / alpha_pattern keyed by escaped full module paths, and target_modules as a list of paths.
me merge --adapter adapters/lora=0.7 --adapter adapters/rslora=0.3 --combine cat --out adapters/cat

for name in lora rslora dora regex cat; do
    me merge --model sample --adapter "adapters/$name" --out "merged/$name"
    # The tool copies the checkpoint folder's side files; the training data is not needed there.
    rm -f "merged/$name/task.jsonl"
done

me export --model sample --mode base --out onnx/base.onnx
for name in lora rslora dora; do
    me export --model sample --adapter "adapters/$name" --mode unmerged --out "onnx/$name-unmerged.onnx"
done
for name in lora dora; do
    me export --model "merged/$name" --mode base --out "onnx/$name-merged.onnx"
done

version="$("${tool[@]}" --version | head -n 1)"
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
python3 "$repo/scripts/device/bundle_manifest.py" "$out" --tool "merge-export $version" --commit "$commit"

require_under_mib "$out" "$max_mib" "make-bundle (one device transfer is 64 MiB)"
echo "bundle: $out ($(size_mib "$out") MiB of $max_mib MiB allowed, $(find "$out" -type f | wc -l) files, $((SECONDS - start)) s)"
