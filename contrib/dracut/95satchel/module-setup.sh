#!/bin/bash
# shellcheck disable=SC2154 # moddir, initdir and systemdsystemunitdir come from dracut
# dracut module "satchel": put satchel's fetcher, this node's enrollment and
# the initrd hook into an initrd that dracut builds.
#
#   cp -rL contrib/dracut/95satchel /usr/lib/dracut/modules.d/
#   dracut --add satchel --force /boot/initrd.img-satchel
#
# (cp -L: satchel-hook.sh and satchel-fetch.service here are links to
# contrib/satchel-hook.sh and contrib/systemd/satchel-fetch.service.)
#
# Sources on the build machine, overridable through the environment:
#   SATCHEL_FETCH_BIN   the static satchel-fetch (default /usr/lib/satchel/satchel-fetch)
#   SATCHEL_ENROLL_DIR  the directory `satchel-pki enroll` wrote for this
#                       node or site, holding satchel.toml (default /etc/satchel);
#                       `none` builds one initrd without credentials, for
#                       many nodes: append each node's enrollment to it as a
#                       cpio holding etc/satchel/ (keys 0600, owner root),
#                       as an operator appends `satchel-bundle initrd`'s
#                       overlay
# The initrd gets the layout contrib/satchel-hook.sh documents:
# /usr/lib/satchel/satchel-fetch, /usr/lib/satchel/satchel-hook,
# /etc/satchel/ (the enrollment directory, modes kept), and either the
# systemd unit wanted by initrd.target (systemd initrds) or the pre-pivot
# hook (others) — never both, so the fetch runs once.

# The image then holds this node's private keys: never include it unless asked.
check() {
    return 255
}

depends() {
    echo network
    return 0
}

install() {
    local fetch="${SATCHEL_FETCH_BIN:-/usr/lib/satchel/satchel-fetch}"
    local enroll="${SATCHEL_ENROLL_DIR:-/etc/satchel}"
    local f

    if [[ ! -x $fetch ]]; then
        derror "satchel: no executable fetcher at $fetch (set SATCHEL_FETCH_BIN)"
        return 1
    fi
    if [[ $enroll != none && ! -f $enroll/satchel.toml ]]; then
        derror "satchel: no satchel.toml in $enroll (set SATCHEL_ENROLL_DIR to the output of satchel-pki enroll)"
        return 1
    fi
    if [[ ! -f $moddir/satchel-hook.sh ]]; then
        derror "satchel: $moddir/satchel-hook.sh is missing (copy the module with cp -rL)"
        return 1
    fi

    inst_simple "$fetch" /usr/lib/satchel/satchel-fetch
    inst_simple "$moddir/satchel-hook.sh" /usr/lib/satchel/satchel-hook
    chmod 0755 "$initdir/usr/lib/satchel/satchel-fetch" "$initdir/usr/lib/satchel/satchel-hook"
    inst_dir /etc/satchel
    if [[ $enroll == none ]]; then
        dinfo "satchel: no enrollment in this initrd; append the node's etc/satchel/ to it"
    else
        while IFS= read -r -d '' f; do
            inst_simple "$f" "/etc/satchel/${f#"$enroll"/}"
        done < <(find "$enroll" -type f -print0)
    fi
    # The hook's backstop on the fetcher's run time (timeout), and how it
    # tells a timeout from a crash (date), when the system has them.
    inst_multiple -o timeout date

    if dracut_module_included "systemd"; then
        inst_simple "$moddir/satchel-fetch.service" "$systemdsystemunitdir/satchel-fetch.service"
        mkdir -p "$initdir$systemdsystemunitdir/initrd.target.wants"
        ln_r "$systemdsystemunitdir/satchel-fetch.service" \
            "$systemdsystemunitdir/initrd.target.wants/satchel-fetch.service"
    else
        inst_hook pre-pivot 50 "$moddir/satchel-pre-pivot.sh"
    fi
}
