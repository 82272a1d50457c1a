#!/usr/bin/env bash
# make test: runs every ctest test in BUILD, then prints how many were skipped,
# which, and why (the message of GTEST_SKIP() or of a script that exits 77).
# Exits with ctest's status, so a failed test fails `make test`.
#   run-tests.sh BUILD JOBS [ctest arguments...]
set -uo pipefail
build=$1 jobs=$2
shift 2
junit=ctest-junit.xml  # ctest writes it relative to the build directory

cd "$build" || exit 1
rm -f "$junit"
ctest -j "$jobs" --output-on-failure --timeout 600 --output-junit "$junit" "$@"
status=$?

if [ ! -f "$junit" ]; then
  echo "make test: ctest wrote no $build/$junit, so no summary of skipped tests"
  exit $(( status == 0 ? 1 : status ))
fi

# One line per test that did not run: "name<TAB>reason". The reason is what
# gtest printed between "file:line: Skipped" and "[  SKIPPED ]"; for a script
# that exits 77, its line "skipped: REASON", else its last line; else ctest's
# own note.
skipped=$(awk '
  function unescape(s) {
    gsub(/&lt;/, "<", s); gsub(/&gt;/, ">", s); gsub(/&quot;/, "\"", s)
    gsub(/&apos;/, "\047", s); gsub(/&amp;/, "\\&", s)
    return s
  }
  function attr(line, key,   m) {
    if (!match(line, key "=\"[^\"]*\"")) return ""
    m = substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 3)
    return unescape(m)
  }
  /<testcase / {
    in_case = (attr($0, "status") == "notrun"); name = attr($0, "name")
    note = ""; reason = ""; last = ""; in_skip = 0; gtest_skip = 0
    next
  }
  !in_case { next }
  /<skipped / { note = attr($0, "message"); next }
  /<\/testcase>/ {
    if (reason == "" && !gtest_skip) reason = (last != "" ? last : note)
    printf "%s\t%s\n", name, reason
    in_case = 0
    next
  }
  {
    line = $0
    sub(/^[ \t]*<system-out>/, "", line); sub(/<\/system-out>[ \t]*$/, "", line)
    line = unescape(line)
    if (line ~ /^\[  SKIPPED \]/) { in_skip = 0; next }
    if (in_skip) { reason = (reason == "" ? line : reason " " line); next }
    if (line ~ /: Skipped$/) { in_skip = 1; gtest_skip = 1; reason = ""; next }
    if (line ~ /^skipped: /) { reason = substr(line, 10); next }
    if (line ~ /[^ \t]/ && line !~ /^\[/) last = line
  }
' "$junit")

total=$(grep -c "<testcase " "$junit")
if [ -z "$skipped" ]; then
  echo "make test: all $total tests ran, none skipped"
else
  count=$(printf '%s\n' "$skipped" | wc -l)
  echo "make test: $count of $total tests skipped:"
  printf '%s\n' "$skipped" | while IFS=$'\t' read -r name reason; do
    echo "  $name: ${reason:-no reason given}"
  done
fi
exit $status
