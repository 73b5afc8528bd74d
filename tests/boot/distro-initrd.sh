#!/bin/sh
# Build the real-distro boot test's initrd with real dracut, inside the
# root distro-root.sh made, with that root's own kernel and dracut (so the
# kernel, its modules and the initrd match): systemd in the initrd,
# systemd-networkd for ip=dhcp, dmsquash-live for root=live:, and the
# project's contrib/dracut/95satchel module (copied with cp -rL, as an
# operator installs it) with the given static fetcher.
#
# Usage: tests/boot/distro-initrd.sh ROOT_DIR FETCHER
#   ROOT_DIR  the directory distro-root.sh printed
#   FETCHER   the static satchel-fetch to put in the initrd
# Prints the initrd's path on the last line of stdout:
#   ROOT_DIR/initrd-<hash>.img, <hash> the sha256 of this script, the
#   module's files and the fetcher. The initrd holds no enrollment
#   (SATCHEL_ENROLL_DIR=none): the test appends the node's etc/satchel/ as a
#   cpio, so one cached initrd serves every fresh test PKI.
#
# The root stays untouched: dracut runs in a private mount namespace on an
# overlay of it (tmpfs upper layer), with /proc, /sys and /dev mounted (a
# bare chroot makes dracut skip steps silently). Idempotent, safe to run
# concurrently (flock), runs as root with no stdin; needs unshare and
# chroot (util-linux, coreutils). Only the newest few initrds are kept.
set -eu

# dracut modules the initrd needs (with their dependencies); nothing else.
MODULES="systemd systemd-initrd dracut-systemd systemd-networkd network dmsquash-live satchel"
# Drivers Debian builds as modules that the guest needs before switch-root.
DRIVERS="virtio_pci virtio_blk virtio_net squashfs overlay loop"
# Initrds kept per root (one per fetcher build).
KEEP=3

here=$(cd "$(dirname "$0")" && pwd)
module=$here/../../contrib/dracut/95satchel

log() { printf 'distro-initrd.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ $# = 2 ] || die "usage: distro-initrd.sh ROOT_DIR FETCHER"
dir=$(cd "$1" && pwd)
fetcher=$2
[ "$(id -u)" = 0 ] || die "must run as root (mount namespace and chroot)"
if [ ! -f "$dir/kver" ] || [ ! -d "$dir/root" ]; then
    die "$dir is not a root distro-root.sh made"
fi
[ -x "$fetcher" ] || die "no executable fetcher at $fetcher"
for tool in unshare chroot flock; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (util-linux, coreutils)"
done
kver=$(cat "$dir/kver")

key=$({
    cat "$0"
    for f in "$module"/*; do
        printf '%s\n' "${f##*/}"
        cat "$f"
    done
    sha256sum <"$fetcher"
} | sha256sum | cut -c1-16)
out=$dir/initrd-$key.img

exec 9>"$dir/.initrd.lock"
flock 9
if [ -f "$out" ]; then
    touch "$out"
    printf '%s\n' "$out"
    exit 0
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/distro-initrd.XXXXXX")
trap 'rm -rf "$scratch" "$scratch.img"' EXIT
log "building the initrd with dracut in $dir/root (kernel $kver)"
started=$(date +%s)
# shellcheck disable=SC2016 # expanded by the inner shell
unshare --mount --propagation private -- sh -eu -c '
    root=$1 scratch=$2 module=$3 fetcher=$4 kver=$5 modules=$6 drivers=$7
    mount -t tmpfs tmpfs "$scratch"
    mkdir "$scratch/up" "$scratch/work" "$scratch/root"
    m=$scratch/root
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$scratch/up,workdir=$scratch/work" "$m"
    mount -t proc proc "$m/proc"
    mount -t sysfs sysfs "$m/sys"
    mount --rbind /dev "$m/dev"
    mount -t tmpfs tmpfs "$m/run"
    mount -t tmpfs tmpfs "$m/tmp"
    cp -rL "$module" "$m/usr/lib/dracut/modules.d/95satchel"
    cp "$fetcher" "$m/tmp/satchel-fetch"
    chroot "$m" env SATCHEL_FETCH_BIN=/tmp/satchel-fetch SATCHEL_ENROLL_DIR=none \
        dracut --force --quiet --no-hostonly --no-hostonly-cmdline --no-early-microcode \
        --modules "$modules" --drivers "$drivers" /tmp/initrd.img "$kver"
    cp "$m/tmp/initrd.img" "$scratch.img"
' sh "$dir/root" "$scratch" "$module" "$fetcher" "$kver" "$MODULES" "$DRIVERS" </dev/null >&2 ||
    die "dracut failed in $dir/root (see above)"
mv "$scratch.img" "$out.tmp"
mv "$out.tmp" "$out"
log "initrd built in $(($(date +%s) - started)) s ($(du -m "$out" | cut -f1) MB)"

# The newest $KEEP initrds stay.
# shellcheck disable=SC2012 # names are ours: initrd-<hex>.img
ls -t "$dir"/initrd-*.img | tail -n +$((KEEP + 1)) | while IFS= read -r old; do
    rm -f "$old"
done
printf '%s\n' "$out"
