#!/usr/bin/env bash
# Installs what is missing, builds the solution and runs every test project.
# Ends with one line "Tests: N passed, N failed, N skipped"; exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build OnnxLora.sln -c Release -nologo -v:minimal
# Code style as .editorconfig says (whitespace, usings, naming); fails on any difference.
dotnet format OnnxLora.sln --verify-no-changes --no-restore
log="$(mktemp)"
status=0
dotnet test OnnxLora.sln -c Release --no-build -nologo -v:minimal 2>&1 | tee "$log" || status=$?
awk '
  /(Passed|Failed)!/ {
    for (i = 1; i <= NF; i++) {
      if ($i == "Passed:")  p += $(i + 1) + 0
      if ($i == "Failed:")  f += $(i + 1) + 0
      if ($i == "Skipped:") s += $(i + 1) + 0
    }
  }
  END { printf "Tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit $status
