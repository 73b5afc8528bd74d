#!/bin/sh
# dracut pre-pivot hook of the satchel module (non-systemd initrds; on
# systemd initrds the module installs satchel-fetch.service instead).
#
# dracut sources this file; it runs the satchel hook as a program and uses
# nothing of dracut's shell library except, on failure, the emergency_shell
# function dracut's init has already defined. The hook exits nonzero only
# when the fetch failed and satchel.required=1: that stops the boot in
# dracut's emergency shell, as OnFailure=emergency.target does for the unit
# (with rd.shell=0 dracut halts there instead). Exit 0 — applied, or failed
# with satchel.required=0 — lets the boot go on.
if ! /usr/lib/satchel/satchel-hook; then
    if command -v emergency_shell >/dev/null 2>&1; then
        emergency_shell -n satchel "satchel: this node's required configuration could not be applied (see /run/satchel/status)"
    else
        echo "satchel: this node's required configuration could not be applied (see /run/satchel/status)" >/dev/console
        sh -i </dev/console >/dev/console 2>&1
    fi
fi
