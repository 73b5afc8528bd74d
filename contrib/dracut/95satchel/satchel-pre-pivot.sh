#!/bin/sh
# dracut pre-pivot hook of satchel: runs the initrd hook on initrds without
# systemd. On a systemd initrd that has satchel-fetch.service the unit runs
# the hook (before initrd.target, so before this hook); this file then does
# nothing. (The dracut module installs one or the other; the overlay from
# `satchel-bundle initrd` carries both, for either kind of initrd.)
#
# dracut sources this file; it runs the satchel hook as a program and uses
# nothing of dracut's shell library except, on failure, the emergency_shell
# function dracut's init has already defined. The hook exits nonzero only
# when the fetch failed and satchel.required=1: that stops the boot in
# dracut's emergency shell, as OnFailure=emergency.target does for the unit
# (with rd.shell=0 dracut halts there instead). Exit 0 (applied, or failed
# with satchel.required=0) lets the boot go on.
if [ -d /run/systemd/system ] && [ -f /usr/lib/systemd/system/satchel-fetch.service ]; then
    : # the unit runs the hook
elif ! /usr/lib/satchel/satchel-hook; then
    if command -v emergency_shell >/dev/null 2>&1; then
        emergency_shell -n satchel "satchel: this node's required configuration could not be applied (see /run/satchel/status)"
    else
        echo "satchel: this node's required configuration could not be applied (see /run/satchel/status)" >/dev/console
        sh -i </dev/console >/dev/console 2>&1
    fi
fi
