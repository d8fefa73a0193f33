#!/bin/sh
# Runs every tend benchmark in turn; results go to stdout only.
#   bench/run-all.sh            full runs (about 4 minutes on 2 cores)
#   bench/run-all.sh --quick    fewer runs and shorter samples (about 1 minute)
# spawn_floor.py is host context for startup_waves (needs cc), not a tend target.
# Needs a built tree (ninja -C build); TEND_BIN, DEMO_BIN and BENCH_PORT_BASE
# are honoured (see bench/README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
quick=no
[ "${1:-}" = "--quick" ] && quick=yes

run() {
    echo
    echo "=== $*"
    "$@"
}

if [ "$quick" = yes ]; then
    run "$here/startup_waves.py" --runs 2
    run "$here/idle_rss.py" --runs 1 --settle 6
    run "$here/stop50.py" --runs 2
    run "$here/probe_cpu.py" --duration 15 --baseline 5
    run "$here/config_load.py" --runs 3
    run "$here/api_load.py"
    run "$here/spawn_floor.py" --reps 3
else
    run "$here/startup_waves.py"
    run "$here/idle_rss.py"
    run "$here/stop50.py"
    run "$here/probe_cpu.py"
    run "$here/config_load.py"
    run "$here/api_load.py"
    run "$here/spawn_floor.py"
fi
