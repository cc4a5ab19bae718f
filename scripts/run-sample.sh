#!/usr/bin/env bash
# Installs what is missing, builds the merge-export tool and runs the whole pipeline on the
# embedded default sample in models/ (merge-export run) into ./onnxlora-run, replacing that folder's
# outputs from an earlier run. Extra arguments go to `merge-export run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build tools/MergeExport -c Release -nologo -v:quiet
dotnet tools/MergeExport/bin/Release/net10.0/merge-export.dll run --out onnxlora-run --force "$@"
