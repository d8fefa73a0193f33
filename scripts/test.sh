#!/bin/sh
# Runs every test suite: the unit and integration tests on a normal
# build, then again on an AddressSanitizer + UndefinedBehaviorSanitizer
# build.  Ends with the line "N passed, N failed" (from meson's test logs).
# TEND_SKIP_ASAN=1 runs the normal build only.
set -u
cd "$(dirname "$0")/.."
./scripts/deps.sh --test || exit 1
status=0
werror=""
[ "${CI:-}" = "true" ] && werror="-Dwerror_ci=true"

# build_dir DIR [meson options...]: configure (once) and build.
build_dir() {
    dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null || { echo "tend: meson setup $dir failed"; return 1; }
    fi
    ninja -C "$dir" >/dev/null || { ninja -C "$dir"; return 1; }
}

rm -f build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
if build_dir build $werror; then
    meson test -C build --print-errorlogs --num-processes 2 || status=1
else
    status=1
fi
if [ "${TEND_SKIP_ASAN:-}" != "1" ]; then
    if build_dir build-asan -Db_sanitize=address,undefined -Db_lundef=false $werror; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        TEND_TEST_SLOW=2 meson test -C build-asan --print-errorlogs --num-processes 2 || status=1
    else
        status=1
    fi
fi
python3 - "$status" <<'PY'
import json, os, sys
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
# A build that failed has no tests to count: count it as a failure.
if sys.argv[1] != "0" and failed == 0:
    failed = 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
exit $status
