#!/usr/bin/env bash
# Installs what is missing, builds the solution and runs every test project.
# Lists every test that did not run to the end (Inconclusive, with the reason it gave, or otherwise skipped), then
# ends with one line "Tests: N passed, N failed, N skipped (N inconclusive)"; exits non-zero when a test fails.
# The GPU category (tests that assert the CUDA provider ran) is Inconclusive without CUDA; run it on a GPU machine
# with: dotnet test OnnxLora.sln -c Release --filter TestCategory=GPU
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build OnnxLora.sln -c Release -nologo -v:minimal
# Code style as .editorconfig says (whitespace, usings, naming); fails on any difference.
dotnet format OnnxLora.sln --verify-no-changes --no-restore
log="$(mktemp)"
results="$(mktemp -d)"
trap 'rm -rf "$log" "$results"' EXIT
status=0
# One TRX file per test project: what each test that did not run to the end said.
dotnet test OnnxLora.sln -c Release --no-build -nologo -v:minimal --logger trx --results-directory "$results" 2>&1 | tee "$log" || status=$?
# First line: how many were Inconclusive; then one line per test that did not run to the end, with its reason.
report="$(python3 - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET

# MSTest reports Assert.Inconclusive as outcome NotExecuted with the message "Assert.Inconclusive. <reason>".
rows = []
for path in sorted(glob.glob(f"{sys.argv[1]}/**/*.trx", recursive=True)):
    root = ET.parse(path).getroot()
    ns = {"t": root.tag.split("}")[0][1:]}
    classes = {}
    for test in root.iterfind("t:TestDefinitions/t:UnitTest", ns):
        method = test.find("t:TestMethod", ns)
        classes[test.get("id")] = method.get("className", "").split(".")[-1] if method is not None else ""
    for result in root.iterfind("t:Results/t:UnitTestResult", ns):
        if result.get("outcome") not in ("NotExecuted", "Inconclusive"):
            continue
        message = (result.findtext("t:Output/t:ErrorInfo/t:Message", default="", namespaces=ns) or "").strip()
        inconclusive = message.startswith("Assert.Inconclusive") or result.get("outcome") == "Inconclusive"
        reason = message.removeprefix("Assert.Inconclusive.").strip().splitlines()[0] if message else "(no reason given)"
        rows.append(("inconclusive" if inconclusive else "skipped", f"{classes.get(result.get('testId'), '')}.{result.get('testName')}", reason))
print(sum(1 for kind, _, _ in rows if kind == "inconclusive"))
for kind, name, reason in rows:
    print(f"  {kind:12} {name}: {reason}")
PY
)" || report="0"
count="$(head -n 1 <<<"$report")"
details="$(tail -n +2 <<<"$report")"
if [[ -n "$details" ]]; then
    echo "Tests that did not run to the end:"
    echo "$details"
fi
awk -v inconclusive="$count" '
  /(Passed|Failed)!/ {
    for (i = 1; i <= NF; i++) {
      if ($i == "Passed:")  p += $(i + 1) + 0
      if ($i == "Failed:")  f += $(i + 1) + 0
      if ($i == "Skipped:") s += $(i + 1) + 0
    }
  }
  END { printf "Tests: %d passed, %d failed, %d skipped (%d inconclusive)\n", p, f, s, inconclusive }' "$log"
exit $status
