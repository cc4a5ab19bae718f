#!/usr/bin/env bash
# Builds what scripts/device/cuda-validate.sh runs on the GPU machine (no .NET SDK there): a self-contained
# linux-x64 publish of merge-export without libtorch (validate and the ONNX merge never load it), ONNX Runtime's
# CUDA provider library, and the sample's ONNX trio, packed as one .tar.xz and cut into parts that each fit one
# device transfer, with their sha256 sums.
#
#   bash scripts/device/make-cuda-bundle.sh [--out DIR] [--part-mib N] [--bundle DIR] [--publish DIR]
#
#   --out DIR       where the parts go (default artifacts/device/cuda, git-ignored): part-00, part-01, ...,
#                   SHA256SUMS (each part, then the whole archive), and CONTENTS.txt
#   --part-mib N    largest part (default 57: a transfer is 64 MiB and the repository's ~5 MiB of tracked files
#                   travel with it)
#   --bundle DIR    the interop bundle whose onnx/ trio is included (default artifacts/device/bundle;
#                   built with make-bundle.sh when missing)
#   --publish DIR   use this existing self-contained publish instead of publishing again
#
# Before packing, the publish is smoke-tested here: `merge-export validate --device cpu` on the sample trio in a
# clean environment (no DOTNET_ROOT, no SDK on PATH), so the staged copy is known to run without .NET installed
# and without libtorch.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$repo/scripts/device/lib.sh"
out="$repo/artifacts/device/cuda"
part_mib=57
bundle="$repo/artifacts/device/bundle"
publish=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --part-mib) part_mib="$2"; shift 2 ;;
        --bundle) bundle="$2"; shift 2 ;;
        --publish) publish="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "make-cuda-bundle: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
work="$repo/artifacts/device/cuda-work"
mkdir -p "$work"
start=$SECONDS

if [[ -z "$publish" ]]; then
    publish="$work/publish"
    rm -rf "$publish"
    echo "[1/5] dotnet publish (self-contained linux-x64; a separate artifacts folder keeps it off the normal build)"
    dotnet publish "$repo/tools/MergeExport/OnnxLora.MergeExport.csproj" -c Release -r linux-x64 --self-contained true \
        -o "$publish" --artifacts-path "$work/build" -p:OnnxLoraSkipTorchSharpCompat=true -nologo -v:q
else
    echo "[1/5] using the publish in $publish"
fi
[[ -x "$publish/merge-export" ]] || { echo "make-cuda-bundle: $publish/merge-export not found" >&2; exit 2; }
[[ -f "$publish/libonnxruntime_providers_cuda.so" ]] || { echo "make-cuda-bundle: no libonnxruntime_providers_cuda.so in $publish" >&2; exit 2; }

echo "[2/5] staging the app without libtorch"
app="$work/app"
rm -rf "$app"
mkdir -p "$app/sample"
cp -a "$publish" "$app/merge-export"
# libtorch and what only TorchSharp loads (train/export need them; validate and merge do not).
find "$app/merge-export" -maxdepth 1 -type f \( -name 'libtorch*' -o -name 'libc10*' -o -name 'libLibTorchSharp*' \
    -o -name 'libaoti_custom_ops*' -o -name 'libbackend_with_compiler*' -o -name 'libjitbackend_test*' \
    -o -name 'libnnapi_backend*' -o -name 'libshm*' -o -name 'libgomp-*' -o -name 'libonnxlora_iosinit*' \) -delete
# Natives a run never loads: debugger and dump support, the optional standalone GCs, LTTng tracing, and ONNX
# Runtime's TensorRT provider (only CUDA is requested). About 3 MiB of the compressed archive, which is what keeps
# it at four parts.
find "$app/merge-export" -maxdepth 1 -type f \( -name 'libmscordbi.so' -o -name 'libmscordaccore.so' -o -name 'createdump' \
    -o -name 'libclrgc.so' -o -name 'libclrgcexp.so' -o -name 'libcoreclrtraceptprovider.so' \
    -o -name 'libonnxruntime_providers_tensorrt.so' \) -delete
if [[ ! -f "$bundle/manifest.json" ]]; then
    bash "$repo/scripts/device/make-bundle.sh" --out "$bundle"
fi
# The lora trio only: the CUDA check needs one merged/unmerged/base set, and every MiB counts against the parts.
for f in base.onnx lora-merged.onnx lora-unmerged.onnx; do
    cp "$bundle/onnx/$f" "$app/sample/$f"
done
cp "$bundle/inputs.json" "$app/sample/inputs.json"
{
    echo "made $(date -u +%FT%TZ) from commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "merge-export $("$app/merge-export/merge-export" --version | head -n 1)"
    echo "CUDA provider needs: $(readelf -d "$app/merge-export/libonnxruntime_providers_cuda.so" | awk '/NEEDED/ { gsub(/[][]/, "", $5); printf "%s ", $5 }')"
    (cd "$app" && find . -type f -printf '%s %p\n' | sort -k2)
} > "$app/CONTENTS.txt"

echo "[3/5] smoke test: validate --device cpu with the staged copy in a clean environment"
smoke="$work/smoke"
rm -rf "$smoke"
# No PATH, no DOTNET_ROOT: a self-contained app must not need the SDK's dotnet.
env -i PATH=/nonexistent HOME="$work" DOTNET_ROOT=/nonexistent DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 \
    "$app/merge-export/merge-export" validate --merged "$app/sample/lora-merged.onnx" \
    --unmerged "$app/sample/lora-unmerged.onnx" --base "$app/sample/base.onnx" --device cpu --runs 5 --warmup 1 \
    --report "$smoke" --quiet
if find "$app" -name 'libtorch*' | grep -q .; then
    echo "make-cuda-bundle: libtorch is still in the staged app" >&2
    exit 1
fi

echo "[4/5] packing $(size_mib "$app") MiB (xz)"
archive="$work/cuda-app.tar.xz"
tar -C "$app" -cf - . | xz -T2 -6 > "$archive"

echo "[5/5] cutting $(size_mib "$archive") MiB into parts of at most $part_mib MiB"
rm -rf "$out"
parts="$(split_parts "$archive" "$out" "$part_mib")"
cp "$app/CONTENTS.txt" "$out/CONTENTS.txt"
echo "cuda bundle: $out ($parts parts, $(size_mib "$out") MiB, $((SECONDS - start)) s)"
ls -l "$out"
