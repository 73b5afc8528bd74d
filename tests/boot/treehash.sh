#!/bin/sh
# treehash.sh DIR — print the canonical listing of the tree under DIR.
#
# The boot test's guest runs this on /sysroot and prints the sha256 of its
# output; the host computes the same listing over the tree it expects
# (tests/tests/boot.rs, `tree_listing`) and compares. POSIX sh with only
# find, sort, stat, readlink, sha256sum and cut, so it runs the same under
# busybox and a GNU userland.
#
# Definition: one line per entry below DIR (DIR itself excluded), sorted by
# the bytes of its path relative to DIR (LC_ALL=C sort):
#   d <mode> - <path>          directory
#   f <mode> <sha256> <path>   regular file, sha256 of its contents
#   l - <target> <path>        symbolic link, its target as stored
#   o <mode> - <path>          anything else (fifo, socket, device)
# <mode> is the permission bits in octal without leading zeros, including
# setuid/setgid/sticky (`stat -c %a`). Owners and times are not part of it.
# Paths containing a newline are not supported.
set -eu

dir=${1:?usage: treehash.sh DIR}
[ "$dir" = / ] || dir=${dir%/}
[ -d "$dir" ] || { echo "treehash.sh: $dir is not a directory" >&2; exit 1; }

find "$dir" -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
    rel=${p#"$dir"/}
    if [ -L "$p" ]; then
        printf 'l - %s %s\n' "$(readlink "$p")" "$rel"
    elif [ -d "$p" ]; then
        printf 'd %s - %s\n' "$(stat -c %a "$p")" "$rel"
    elif [ -f "$p" ]; then
        printf 'f %s %s %s\n' "$(stat -c %a "$p")" "$(sha256sum <"$p" | cut -d' ' -f1)" "$rel"
    else
        printf 'o %s - %s\n' "$(stat -c %a "$p")" "$rel"
    fi
done
