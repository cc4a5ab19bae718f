#!/usr/bin/env bash
# Two builds side by side at real size (issue #14): checkpoint merge, ONNX merge and merged fp16 export of one
# generated model, each against File.Copy of the same bytes (+ fsync), interleaved per round in child processes
# (bench/MergeBench `merge`/`onnxmerge`/`copy`, bench/ExportBench `export`), every output deleted after its trial.
# OLD and NEW are repository roots whose MergeBench and ExportBench are built (Release), e.g. a worktree of the commit
# before a change. DIR must hold ckpt/ and adapter/ (`MergeBench generate DIR 32`) and onnx/model.onnx (the base export,
# `ExportBench export DIR/ckpt - DIR/onnx/model.onnx fp16`); it needs the checkpoint's size twice more free.
# DROP=1 empties the page cache before each trial (root), so every trial reads its input from the disk. WHICH="new copy"
# leaves the old build out (its order alternates per round, as the default "old new copy" rotates).
#   OLD=/path/old NEW=. DIR=/tmp/r32 ROUNDS=3 DROP=0 OPS="ckpt onnx exp" bash bench/ab-builds.sh > log
# Lines: "<op>-<old|new|copy> <seconds> <peak RSS KiB> cpu(user sys) <user s> <system s> load <1-min load>".
set -u
: "${OLD:?OLD=repository root of the old build}" "${NEW:?NEW=repository root of the new build}" "${DIR:?DIR=model folder}"
ROUNDS=${ROUNDS:-3}; DROP=${DROP:-0}; OPS=${OPS:-"ckpt onnx exp"}; WHICH=${WHICH:-"old new copy"}
merge_bench() { echo "$1/bench/MergeBench/bin/Release/net10.0/MergeBench.dll"; }
export_bench() { echo "$1/bench/ExportBench/bin/Release/net10.0/ExportBench.dll"; }
run() {
    sync
    if [[ "$DROP" == 1 ]]; then echo 1 > /proc/sys/vm/drop_caches; fi
    local out err
    err=$(mktemp)
    out=$(/usr/bin/time -f "%U %S" "$@" 2>"$err" | tail -1)
    echo "$label $out cpu(user sys) $(tail -1 "$err") load $(cut -d' ' -f1 /proc/loadavg)"
    rm -f "$err"
}
echo "DROP=$DROP free: $(df -BG --output=avail "$DIR" | tail -1 | tr -d ' ')"
for r in $(seq 1 "$ROUNDS"); do
    echo "# round $r $(date +%T)"
    read -r -a which <<< "$WHICH"
    if (( r % 2 )); then order="${which[*]}"; else order="${which[*]:1} ${which[0]}"; fi
    for op in $OPS; do
        for w in $order; do
            rm -rf "$DIR/out" "$DIR/cp"
            mkdir -p "$DIR/out"
            label="$op-$w"
            root=$NEW
            [[ "$w" == old ]] && root=$OLD
            case $op-$w in
                ckpt-copy|exp-copy) run dotnet "$(merge_bench "$NEW")" copy "$DIR/ckpt" "$DIR/cp" ;;
                onnx-copy) run dotnet "$(merge_bench "$NEW")" copy "$DIR/onnx" "$DIR/cp" ;;
                ckpt-*) run dotnet "$(merge_bench "$root")" merge "$DIR/ckpt" "$DIR/adapter" "$DIR/out/m" ;;
                onnx-*) run dotnet "$(merge_bench "$root")" onnxmerge "$DIR/onnx/model.onnx" "$DIR/adapter" "$DIR/out/model.onnx" ;;
                exp-*) run dotnet "$(export_bench "$root")" export "$DIR/ckpt" "$DIR/adapter" "$DIR/out/model.onnx" fp16 ;;
            esac
        done
    done
    rm -rf "$DIR/out" "$DIR/cp"
done
echo "done $(date +%T)"
