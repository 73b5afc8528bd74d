#!/bin/sh
# Build the boot test's base initramfs.
#
#   initramfs.sh base KERNEL_DIR OUT.cpio.gz
#       The minimal busybox initramfs standing in for a distro initrd:
#       static busybox and its applet links, tests/boot/init as /init,
#       tests/boot/treehash.sh, and the virtio-net modules from KERNEL_DIR
#       (as tests/boot/kernel.sh prints it) with their load order.
#
# Entries are sorted and owned by root, so the same input gives the same
# bytes. Needs cpio, gzip and a static busybox (busybox-static), found with
# `command -v busybox` or $BUSYBOX.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
die() { printf 'initramfs.sh: %s\n' "$*" >&2; exit 1; }

# Writes a newc cpio of directory $1's contents to stdout.
newc() {
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
}

case ${1:-} in
base)
    [ $# = 3 ] || die "usage: initramfs.sh base KERNEL_DIR OUT.cpio.gz"
    kdir=$2
    out=$3
    busybox=${BUSYBOX:-$(command -v busybox || true)}
    [ -n "$busybox" ] || die "no busybox (install busybox-static)"
    if ldd "$busybox" >/dev/null 2>&1; then
        die "$busybox is dynamically linked (install busybox-static)"
    fi
    [ -f "$kdir/modules.order" ] || die "$kdir has no modules.order (run tests/boot/kernel.sh)"

    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" \
        "$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/tmp" \
        "$root/sysroot" "$root/etc" "$root/lib/modules/boot-test"
    cp "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list-full); do
        [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$root/$applet"
    done
    cp "$here/init" "$root/init"
    cp "$here/treehash.sh" "$root/bin/treehash.sh"
    chmod 0755 "$root/init" "$root/bin/treehash.sh"
    cp "$kdir/modules.order" "$root/lib/modules/boot-test/"
    while read -r mod; do
        cp "$kdir/modules/$mod.ko" "$root/lib/modules/boot-test/"
    done <"$kdir/modules.order"
    newc "$root" | gzip -n -6 >"$out.tmp"
    mv "$out.tmp" "$out"
    ;;
*)
    die "usage: initramfs.sh base KERNEL_DIR OUT.cpio.gz"
    ;;
esac
