#!/bin/sh
# vmlinux.sh BZIMAGE OUT — write the uncompressed ELF kernel inside a
# Debian bzImage to OUT.
#
# Booting the ELF directly (QEMU -kernel, PVH entry) saves seconds of
# emulated decompression. The bzImage wraps an xz-compressed ELF
# (CONFIG_KERNEL_XZ): find each xz stream header and keep the first that
# decompresses to an ELF file. Used by kernel.sh and distro-root.sh. Needs
# xz, grep -P, od.
set -eu

die() { printf 'vmlinux.sh: %s\n' "$*" >&2; exit 1; }
[ $# = 2 ] || die "usage: vmlinux.sh BZIMAGE OUT"
bz=$1
out=$2
[ -f "$bz" ] || die "no kernel image at $bz"

offsets=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | cut -d: -f1) || true
for off in $offsets; do
    tail -c "+$((off + 1))" "$bz" | xz -dc --single-stream >"$out.tmp" 2>/dev/null || true
    if [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
        mv "$out.tmp" "$out"
        exit 0
    fi
done
rm -f "$out.tmp"
die "no xz-compressed ELF kernel found in $bz (is CONFIG_KERNEL_XZ set?)"
