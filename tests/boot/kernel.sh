#!/bin/sh
# Provision the kernel the boot test runs: Debian's linux-image-*-amd64
# (unsigned variant), cached in a git-ignored folder.
#
# Usage: tests/boot/kernel.sh [CACHE_DIR]
#   CACHE_DIR defaults to $SATCHEL_BOOT_CACHE, else <repo>/.cache/boot.
# Prints the kernel directory on its last line of stdout. That directory holds:
#   vmlinux          the uncompressed ELF kernel (booted directly, PVH entry)
#   config           the kernel's build configuration
#   modules/*.ko     the virtio-net modules
#   modules.order    their names, one a line, in load order
#   package          the Debian package name and version it came from
#
# Idempotent: when the kernel directory for the archive's current package
# exists, it only prints it (a few milliseconds when apt's lists are older
# than the cache, else one apt-cache look-up). Safe to run concurrently
# (flock). The .deb is deleted once unpacked. Needs apt-get, dpkg-deb, xz,
# grep -P and flock (and vmlinux.sh beside it); runs as root with no stdin
# on a fresh machine. `apt-get update` runs only when the package
# cannot be resolved from the local package lists.
set -eu

# The virtio-net driver and what it needs, in load order.
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"
# The meta package that names the archive's current kernel.
META=linux-image-amd64

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${SATCHEL_BOOT_CACHE:-$here/../../.cache/boot}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

log() { printf 'kernel.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The unsigned image package behind the meta package, e.g.
# linux-image-6.1.0-48-amd64-unsigned; empty when apt does not know it.
resolve() {
    image=$(apt-cache depends "$META" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
    [ -n "$image" ] || return 0
    pkg="$image-unsigned"
    ver=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')
    case $ver in '' | '(none)') return 0 ;; esac
    printf '%s %s\n' "$pkg" "$ver"
}

exec 9>"$cache/.lock"
flock 9

# apt's lists have not changed since the cached kernel was made: it is
# still the archive's current one (and apt-cache is slow on a busy machine).
lists=/var/lib/apt/lists
if [ -f "$cache/kernel/vmlinux" ] && [ -f "$cache/kernel/package" ] && [ -d "$lists" ] &&
    [ -z "$(find "$lists" -maxdepth 0 -newer "$cache/kernel/package")" ]; then
    printf '%s\n' "$cache/kernel"
    exit 0
fi

found=$(resolve)
if [ -z "$found" ]; then
    # No package lists, or stale ones: reuse a cached kernel if there is one.
    if [ -f "$cache/kernel/vmlinux" ] && [ -f "$cache/kernel/package" ]; then
        log "apt cannot resolve $META; reusing cached $(cat "$cache/kernel/package")"
        printf '%s\n' "$cache/kernel"
        exit 0
    fi
    log "apt cannot resolve $META; running apt-get update"
    apt-get update -q >&2 || die "apt-get update failed"
    found=$(resolve)
    [ -n "$found" ] || die "no $META kernel package in the archive"
fi
pkg=${found% *}
ver=${found#* }

if [ -f "$cache/kernel/vmlinux" ] && [ "$(cat "$cache/kernel/package" 2>/dev/null)" = "$pkg $ver" ]; then
    printf '%s\n' "$cache/kernel"
    exit 0
fi

log "provisioning $pkg $ver"
work="$cache/kernel.new"
rm -rf "$work"
mkdir -p "$work/unpack" "$work/modules"
# apt's sandbox user may not write here; the download still lands.
(cd "$work" && apt-get download -q "$pkg=$ver" >&2) || die "apt-get download $pkg=$ver failed"
deb=$(find "$work" -maxdepth 1 -name "${pkg}_*_amd64.deb" | head -n 1)
[ -n "$deb" ] || die "apt-get download left no $pkg .deb in $work"
# Only the image, its config and the modules we load: the full package
# unpacks to about 400 MB.
dpkg-deb --fsys-tarfile "$deb" | (cd "$work/unpack" && tar -x --wildcards \
    './boot/vmlinuz-*' './boot/config-*' \
    './lib/modules/*/kernel/drivers/virtio/*' \
    './lib/modules/*/kernel/drivers/net/*failover*' \
    './lib/modules/*/kernel/drivers/net/virtio_net*' \
    './lib/modules/*/kernel/net/core/failover*')
vmlinuz=$(find "$work/unpack/boot" -name 'vmlinuz-*' | head -n 1)
[ -n "$vmlinuz" ] || die "$deb holds no boot/vmlinuz-*"
cp "$work/unpack"/boot/config-* "$work/config"

sh "$here/vmlinux.sh" "$vmlinuz" "$work/vmlinux" || die "cannot unpack the ELF kernel from $vmlinuz"

: >"$work/modules.order"
for m in $MODULES; do
    ko=$(find "$work/unpack/lib/modules" -name "$m.ko*" | head -n 1)
    [ -n "$ko" ] || die "module $m not found in $deb"
    case $ko in
    *.ko) cp "$ko" "$work/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$ko" >"$work/modules/$m.ko" ;;
    *) die "module $ko has an unknown compression" ;;
    esac
    printf '%s\n' "$m" >>"$work/modules.order"
done
rm -rf "$work/unpack" "$deb"
printf '%s %s\n' "$pkg" "$ver" >"$work/package"

rm -rf "$cache/kernel"
mv "$work" "$cache/kernel"
log "kernel ready in $cache/kernel"
printf '%s\n' "$cache/kernel"
