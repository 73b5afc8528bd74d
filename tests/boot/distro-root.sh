#!/bin/sh
# Build the real-distro boot test's root: a minimal Debian (the release the
# machine's apt sources name) made by mmdebstrap from Debian packages, with
# systemd as PID 1, merged-/usr as Debian ships it, its own kernel, and the
# dracut that builds its initrds (tests/boot/distro-initrd.sh).
#
# Usage: tests/boot/distro-root.sh [CACHE_DIR]
#   CACHE_DIR defaults to $SATCHEL_BOOT_CACHE, else <repo>/.cache/boot.
# Prints the root's directory on the last line of stdout:
#   CACHE_DIR/distro/root-<hash>/ where <hash> is the sha256 of the recipe
#   (this script and the release), holding
#     root/           the unpacked root (distro-initrd.sh runs dracut in it)
#     root.squashfs   the image the guest boots read-only: the root without
#                     boot/ and usr/lib/modules/ (the initrd loads the
#                     drivers it needs) and without docs
#     vmlinux         the root's kernel, uncompressed ELF (vmlinux.sh)
#     kver            that kernel's version (its usr/lib/modules/ name)
#     recipe          what was hashed, for the curious
#
# Idempotent (a finished root is only printed) and safe to run concurrently
# (flock). Runs as root with no stdin. Needs mmdebstrap, mksquashfs
# (squashfs-tools), xz, flock, and network access to the Debian mirror the
# machine's apt sources name (the only network it uses: mmdebstrap fetches
# the packages from there). Older roots in CACHE_DIR/distro/ are removed.
#
# Environment: SATCHEL_DISTRO_SUITE (default: VERSION_CODENAME of
# /etc/os-release) and SATCHEL_DISTRO_SOURCES (apt source files, default:
# those of /etc/apt that name the suite) pick the release and the mirror.
set -eu

# What goes into the root besides Essential and apt (mmdebstrap minbase).
# dbus: dracut's network module picks systemd-networkd, which needs it.
# tzdata: the test's bundle links /etc/localtime into /usr/share/zoneinfo.
PACKAGES="systemd-sysv udev kmod iproute2 procps dbus tzdata linux-image-amd64 dracut dracut-network dracut-live"
# What the booted image leaves out (relative to the root).
SQUASH_EXCLUDE="boot usr/lib/modules usr/share/doc usr/share/man usr/share/locale usr/share/info"
# The image's own hostname: the host bundle replaces it.
IMAGE_HOSTNAME=satchel-image

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${SATCHEL_BOOT_CACHE:-$here/../../.cache/boot}}

log() { printf 'distro-root.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap and chroot)"
for tool in mmdebstrap:mmdebstrap mksquashfs:squashfs-tools xz:xz-utils flock:util-linux; do
    command -v "${tool%%:*}" >/dev/null 2>&1 ||
        die "${tool%%:*} is missing: install the Debian package ${tool#*:}"
done

suite=${SATCHEL_DISTRO_SUITE:-}
if [ -z "$suite" ] && [ -r /etc/os-release ]; then
    suite=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release | tr -d '"')
fi
[ -n "$suite" ] || die "cannot tell the Debian release (no VERSION_CODENAME in /etc/os-release); set SATCHEL_DISTRO_SUITE"

# The apt source files that name $suite or $suite-*, one a line.
sources_for() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case $f in
        *.sources)
            awk -v s="$1" 'tolower($1) == "suites:" {
                for (i = 2; i <= NF; i++) if ($i == s || index($i, s "-") == 1) hit = 1
            } END { exit !hit }' "$f"
            ;;
        *)
            awk -v s="$1" '$1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == s || index($(i + 1), s "-") == 1) hit = 1
            } END { exit !hit }' "$f"
            ;;
        esac && printf '%s\n' "$f"
    done
}
sources=${SATCHEL_DISTRO_SOURCES:-$(sources_for "$suite")}
sources=$(printf '%s\n' "$sources" | tr '\n' ' ')
sources=${sources% }
[ -n "$sources" ] || die "no apt source in /etc/apt names $suite; set SATCHEL_DISTRO_SOURCES to a sources file"

key=$({ cat "$0"; printf 'suite %s\n' "$suite"; } | sha256sum | cut -c1-16)
mkdir -p "$cache/distro"
cache=$(cd "$cache/distro" && pwd)
dir=$cache/root-$key

exec 9>"$cache/.lock"
flock 9

if [ -f "$dir/root.squashfs" ] && [ -f "$dir/vmlinux" ] && [ -f "$dir/kver" ]; then
    printf '%s\n' "$dir"
    exit 0
fi

# Roots of older recipes: about 1 GB each.
for old in "$cache"/root-*; do
    [ "$old" = "$dir" ] || [ ! -e "$old" ] || rm -rf "$old"
done

work=$dir.new
rm -rf "$work"
mkdir -p "$work"
log "building a $suite root with mmdebstrap (packages from the machine's apt sources)"
started=$(date +%s)
# INITRD=No: the kernel's postinst skips its own initrd (distro-initrd.sh
# builds the ones the test boots).
# shellcheck disable=SC2086 # one word per source file
INITRD=No mmdebstrap --variant=minbase --mode=root \
    --include="$(echo $PACKAGES | tr ' ' ,)" \
    --customize-hook="echo $IMAGE_HOSTNAME >\"\$1/etc/hostname\"" \
    "$suite" "$work/root" $sources </dev/null >&2 ||
    die "mmdebstrap failed (see above); is the mirror in $sources reachable?"
log "root built in $(($(date +%s) - started)) s"

[ -L "$work/root/lib" ] || die "the root is not merged-/usr (no lib -> usr/lib link)"
kver=$(ls "$work/root/usr/lib/modules")
[ "$(printf '%s\n' "$kver" | wc -l)" = 1 ] || die "expected one kernel in the root, found: $kver"
printf '%s\n' "$kver" >"$work/kver"
sh "$here/vmlinux.sh" "$work/root/boot/vmlinuz-$kver" "$work/vmlinux"

started=$(date +%s)
# shellcheck disable=SC2086 # one word per excluded path
mksquashfs "$work/root" "$work/root.squashfs" -noappend -quiet -no-progress \
    -no-xattrs -comp zstd -Xcompression-level 3 -e $SQUASH_EXCLUDE >&2 ||
    die "mksquashfs failed"
log "squashfs built in $(($(date +%s) - started)) s ($(du -m "$work/root.squashfs" | cut -f1) MB)"
{
    printf 'suite %s\nsources %s\npackages %s\n' "$suite" "$sources" "$PACKAGES"
    printf 'kernel %s\n' "$kver"
} >"$work/recipe"

mv "$work" "$dir"
log "root ready in $dir"
printf '%s\n' "$dir"
