#!/bin/sh
# Builds and runs the liburcu (urcu-memb) peer of the RCU benchmarks, installing Debian's liburcu-dev
# when it is missing. Usage: scripts/bench-rcu-peer.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -e /usr/include/urcu/urcu-memb.h ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y liburcu-dev || { $sudo apt-get update && $sudo apt-get install -y liburcu-dev; }
fi
out=${TMPDIR:-/tmp}/urcu_bench
gcc -O2 -o "$out" "$here/rcu-peer/urcu_bench.c" -lurcu-memb -lurcu-common -lpthread
"$out"
