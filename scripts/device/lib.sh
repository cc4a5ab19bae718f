# Shared by the scripts in scripts/device/ (sourced, not run). Plain coreutils only: it also runs on the GPU
# machine, which has no .NET and no package registry.

# size_mib PATH: the size of a file or folder in MiB, one decimal.
size_mib() {
    local bytes
    bytes="$(du -sb "$1" | cut -f1)"
    awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }'
}

# require_under_mib PATH MAX_MIB WHAT: fails (exit status 1, one line on stderr) when PATH is larger than MAX_MIB.
require_under_mib() {
    local path="$1" max="$2" what="$3" bytes
    bytes="$(du -sb "$path" | cut -f1)"
    if (( bytes > max * 1048576 )); then
        echo "$what: $path is $(size_mib "$path") MiB, over the $max MiB limit" >&2
        return 1
    fi
}

# split_parts FILE DIR PART_MIB: cuts FILE into DIR/part-00, part-01, ... of at most PART_MIB MiB each and writes
# DIR/SHA256SUMS (one line per part, then the whole file as "whole"). Prints the number of parts.
split_parts() {
    local file="$1" dir="$2" part_mib="$3"
    mkdir -p "$dir"
    rm -f "$dir"/part-* "$dir/SHA256SUMS"
    split -b "${part_mib}M" -d -a 2 "$file" "$dir/part-"
    (cd "$dir" && sha256sum part-* > SHA256SUMS)
    echo "$(sha256sum < "$file" | cut -d' ' -f1)  whole" >> "$dir/SHA256SUMS"
    local part
    for part in "$dir"/part-*; do
        require_under_mib "$part" "$part_mib" "split_parts" || return 1
    done
    find "$dir" -name 'part-*' | wc -l
}

# verify_parts DIR: checks every part named in DIR/SHA256SUMS that is present; prints the names of missing parts.
# Exit status 1 when a present part has the wrong sha256.
verify_parts() {
    local dir="$1" name sum actual status=0
    while read -r sum name; do
        [[ "$name" == whole ]] && continue
        if [[ ! -f "$dir/$name" ]]; then
            echo "$name"
            continue
        fi
        actual="$(sha256sum < "$dir/$name" | cut -d' ' -f1)"
        if [[ "$actual" != "$sum" ]]; then
            echo "verify_parts: $dir/$name has sha256 $actual, expected $sum" >&2
            status=1
        fi
    done < "$dir/SHA256SUMS"
    return $status
}

# join_parts DIR FILE: concatenates DIR/part-* (all of them must be there and verified) into FILE and checks the
# whole file's sha256.
join_parts() {
    local dir="$1" file="$2" absent expected actual
    absent="$(verify_parts "$dir")" || return 1
    if [[ -n "$absent" ]]; then
        echo "join_parts: missing in $dir: $(echo "$absent" | tr '\n' ' ')" >&2
        return 1
    fi
    cat "$dir"/part-* > "$file"
    expected="$(awk '$2 == "whole" { print $1 }' "$dir/SHA256SUMS")"
    actual="$(sha256sum < "$file" | cut -d' ' -f1)"
    if [[ "$actual" != "$expected" ]]; then
        echo "join_parts: $file has sha256 $actual, expected $expected" >&2
        return 1
    fi
}
