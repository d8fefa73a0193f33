#!/bin/sh
# Runs every test suite: the unit and integration tests on a normal
# build, then again on an AddressSanitizer + UndefinedBehaviorSanitizer
# build.  Ends with the line "N passed, N failed" (from meson's test logs).
set -u
cd "$(dirname "$0")/.."
./scripts/deps.sh --test || exit 1
status=0
run_suite() { # builddir, extra meson options...
    dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null || { echo "tend: meson setup $dir failed"; return 1; }
    fi
    ninja -C "$dir" >/dev/null || { ninja -C "$dir"; return 1; }
    meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" 2>&1 | grep -v '^ninja' || true
}
werror=""
[ "${CI:-}" = "true" ] && werror="-Dwerror_ci=true"
run_suite build $werror >/dev/null 2>&1 || true
meson test -C build --print-errorlogs --num-processes 2 || status=1
if [ "${TEND_SKIP_ASAN:-}" != "1" ]; then
    if [ ! -f build-asan/build.ninja ]; then
        meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false $werror >/dev/null || status=1
    fi
    ninja -C build-asan >/dev/null || { ninja -C build-asan; status=1; }
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    TEND_TEST_SLOW=2 meson test -C build-asan --print-errorlogs --num-processes 2 || status=1
fi
python3 - <<'PY'
import json, os
passed = failed = skipped = 0
for d in ("build", "build-asan"):
    p = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(p):
        continue
    for line in open(p):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
exit $status
