#!/bin/sh
# NOT satchel-fetch: the smoke boot's stand-in for it, installed at the
# fetcher's path in a test overlay only to prove the guest side (kernel,
# initramfs, overlay concatenation, NIC, QEMU's forward to host loopback,
# the hook and its policy) before the real fetcher takes its place.
#
# Takes the fetcher's arguments (--config FILE), reads BOOTIF= from
# /proc/cmdline, GETs http://10.0.2.100:443/v1/boot/<mac> in plain HTTP
# through QEMU's forward to the test's responder, and unpacks the tar it
# returns into /sysroot. Exits 2-5 on failure.
set -uf
if [ "${1:-}" != --config ] || [ ! -r "${2:-}" ]; then
    echo "stand-in: expected --config FILE" >&2
    exit 2
fi
mac=
read -r line </proc/cmdline
# shellcheck disable=SC2086 # split into words
for w in $line; do
    case $w in BOOTIF=01-*) mac=${w#BOOTIF=01-} ;; esac
done
[ -n "$mac" ] || { echo "stand-in: no BOOTIF= on the command line" >&2; exit 3; }
# busybox wget's own -T is unreliable; bound it with timeout.
timeout 20 wget -q -O /tmp/stand-in.tar "http://10.0.2.100:443/v1/boot/$mac" ||
    { echo "stand-in: download failed" >&2; exit 4; }
tar -x -f /tmp/stand-in.tar -C /sysroot || { echo "stand-in: unpack failed" >&2; exit 5; }
