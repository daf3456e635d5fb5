#!/bin/sh
# Installs the Debian packages the real-network tests need, when we are root and they are missing.
# Tests that need a missing tool skip with a reason, so a non-root developer can still run the suite.
set -e
# extra packages may be named on the command line (the benchmark adds its reference tools)
PACKAGES="$* iptables iproute2 tcpdump fping prometheus prometheus-alertmanager prometheus-blackbox-exporter systemd hping3 libcap2-bin util-linux chromium chromium-driver"
missing=""
for pkg in $PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "note: not root, not installing:$missing (tests that need them will skip)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: no apt-get; missing:$missing (tests that need them will skip)" >&2
    exit 0
fi
echo "installing test tools:$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
