#!/bin/sh
# Installs what is missing, builds, and runs the demo system in the
# foreground (Ctrl-C stops it cleanly).
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
cd examples/demo
exec ../../build/tend up -f tend.yaml "$@"
