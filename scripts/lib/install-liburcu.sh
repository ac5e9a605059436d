# Sourced by the benchmark scripts: installs Debian's liburcu-dev (the C peer's RCU) when it is missing.
# Only benchmarks need it; the library, its tests and the stress binary never do.
if [ ! -e /usr/include/urcu/urcu-memb.h ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y liburcu-dev >/dev/null 2>&1 \
        || { $sudo apt-get update >/dev/null && $sudo apt-get install -y liburcu-dev >/dev/null; }
fi
