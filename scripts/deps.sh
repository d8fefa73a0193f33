#!/bin/sh
# Installs the Debian 12 packages tend needs to build, test and run its
# demo, when missing.  As root it runs apt-get; otherwise it prints the
# command to run and fails.
set -eu
PKGS="build-essential meson ninja-build pkg-config python3 libuv1-dev libmicrohttpd-dev
libcurl4-openssl-dev libjansson-dev libyaml-dev libsqlite3-dev libpq-dev libcmocka-dev"
[ "${1:-}" = "--bench" ] && PKGS="$PKGS wrk valgrind beanstalkd redis-server"
[ "${1:-}" = "--test" ] && PKGS="$PKGS valgrind"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "tend: installing missing packages:$missing" >&2
if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq >&2
    # shellcheck disable=SC2086
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
else
    echo "tend: run as root: apt-get install -y$missing" >&2
    exit 1
fi
