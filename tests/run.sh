#!/bin/sh
# Runs every test binary in $1/tests and the fuzz-corpus replays in $1/fuzz.
# A test that exits 77 is reported as SKIPPED (input missing) and listed; it never counts as
# passed.  Exit status: 1 if any test failed.
B=${1:-build}
pass=0; fail=0; skip=0; failed=""; skipped=""
if [ ! -d ../shared ] && [ -z "$QF_SHARED" ]; then
    echo "note: ../shared is absent: tests that need the shared models and fixtures will be SKIPPED"
fi
for t in "$B"/tests/test_* "$B"/fuzz/replay_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d) continue;; esac
    name=$(basename "$t")
    start=$(date +%s)
    if [ "${t#"$B"/fuzz/}" != "$t" ]; then
        corpus="tests/fuzz/corpus/${name#replay_fuzz_}"
        "$t" "$corpus" > "$B/$name.log" 2>&1; rc=$?
    else
        "$t" > "$B/$name.log" 2>&1; rc=$?
    fi
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS $name (${secs}s) $(tail -n 1 "$B/$name.log")"
    elif [ $rc -eq 77 ]; then skip=$((skip+1)); skipped="$skipped $name"; echo "SKIP $name: $(grep SKIP "$B/$name.log" | head -n 1)"
    else fail=$((fail+1)); failed="$failed $name"; echo "FAIL $name (exit $rc)"; tail -n 30 "$B/$name.log"; fi
done
echo "== $pass passed, $fail failed, $skip skipped"
[ -n "$skipped" ] && echo "   skipped (not passed):$skipped"
[ $fail -eq 0 ] || { echo "   failed:$failed"; exit 1; }
exit 0
