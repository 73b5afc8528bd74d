#!/bin/sh
# satchel-hook — run satchel-fetch in the initrd, before switch-root, and
# turn its outcome into the boot policy the kernel command line asks for.
#
# One self-contained POSIX sh script: no bashisms, no dracut shell library.
# It is called, never sourced, by
#   - the systemd unit satchel-fetch.service (ExecStart=), whose
#     OnFailure=emergency.target acts on a nonzero exit;
#   - dracut's pre-pivot hook (95satchel/satchel-pre-pivot.sh), which drops
#     to dracut's emergency shell on a nonzero exit.
#
# Initrd layout (satchel-bundle initrd and the dracut module install exactly
# this; the paths below are the one place the hook names them):
#   /usr/lib/satchel/satchel-fetch   the static fetcher, 0755
#   /usr/lib/satchel/satchel-hook    this script, 0755
#   /etc/satchel/satchel.toml        the node config `satchel-pki enroll`
#                                    writes, with the credentials it names
#                                    beside it (keys 0600)
#   /usr/lib/systemd/system/satchel-fetch.service and its
#   /usr/lib/systemd/system/initrd.target.wants/ link, on systemd initrds
#
# Kernel command line read here (the fetcher reads the rest itself):
#   satchel.required=0|1   default 1, as the fetcher's. With 1, a failed
#                          fetch stops the boot. A bare `satchel.required`
#                          and 1/y/yes/true/on mean 1; 0/n/no/false/off mean
#                          0; any other value is taken as 1 (fail closed)
#                          with a warning (the fetcher refuses it too).
#   satchel.timeout=SECONDS  the fetcher's overall deadline (1-3600); the
#                          hook stops the fetcher HOOK_GRACE seconds after it.
# As in the fetcher's parser, the last occurrence wins and double quotes
# are dropped.
#
# Writes $SATCHEL_STATUS_DIR/status, key=value lines:
#   result=ok|failed    whether the fetcher exited 0. The fetcher applies
#                       satchel.required itself too: with satchel.required=0
#                       it exits 0 after a failed run (its log, the kernel
#                       log and its report to the server say what failed),
#                       so result=failed there means it could not run at
#                       all, crashed or ran out of time.
#   required=0|1        the policy in force
#   fetch_exit=N        the fetcher's exit status, 128+N when it died of
#                       signal N; 124: stopped by the hook's timeout;
#                       127: no fetcher; 126: no config
#   reason=TEXT         on failure, a one-line reason
# A second run after result=ok does nothing (both the unit and the dracut
# hook may be installed by mistake; the fetcher is idempotent anyway).
#
# Exit status: 0 when the configuration was applied, or when it failed and
# satchel.required is 0 (the boot goes on with the image's defaults);
# 1 when it failed and satchel.required is 1 (the caller must stop the boot).
#
# Every path and the two grace periods may be overridden through the
# environment (SATCHEL_FETCH, SATCHEL_CONFIG, SATCHEL_STATUS_DIR,
# SATCHEL_CMDLINE, SATCHEL_KMSG, SATCHEL_HOOK_GRACE, SATCHEL_HOOK_KILL_AFTER),
# for tests only.
set -u

SATCHEL_FETCH=${SATCHEL_FETCH:-/usr/lib/satchel/satchel-fetch}
SATCHEL_CONFIG=${SATCHEL_CONFIG:-/etc/satchel/satchel.toml}
SATCHEL_STATUS_DIR=${SATCHEL_STATUS_DIR:-/run/satchel}
SATCHEL_CMDLINE=${SATCHEL_CMDLINE:-/proc/cmdline}
SATCHEL_KMSG=${SATCHEL_KMSG:-/dev/kmsg}

# satchel.required when the command line does not set it.
# Matches the fetcher's default.
DEFAULT_REQUIRED=1
# The fetcher's overall deadline when satchel.timeout is not set, in seconds.
# Matches the fetcher's own default; the hook only enforces it as a backstop.
DEFAULT_TIMEOUT=300
# Largest satchel.timeout the fetcher accepts, in seconds; larger is clamped.
MAX_TIMEOUT=3600
# Seconds past the deadline before the hook stops the fetcher (SIGTERM),
# and seconds after that before SIGKILL.
HOOK_GRACE=${SATCHEL_HOOK_GRACE:-30}
HOOK_KILL_AFTER=${SATCHEL_HOOK_KILL_AFTER:-10}

log() {
    printf 'satchel-hook: %s\n' "$*" >&2
}

# Also into the kernel log, so the outcome is in the journal after switch-root.
kmsg() {
    log "$2"
    if [ -w "$SATCHEL_KMSG" ]; then
        printf '<%s>satchel-hook: %s\n' "$1" "$2" >>"$SATCHEL_KMSG" 2>/dev/null || true
    fi
}

# cmdline_value KEY: prints the value of the last KEY=VALUE on the kernel
# command line, `=` alone for a bare KEY, nothing when KEY is absent.
cmdline_value() {
    _key=$1
    _line=
    if [ -r "$SATCHEL_CMDLINE" ]; then
        IFS= read -r _line <"$SATCHEL_CMDLINE" || true
    fi
    _found=
    # Quotes group words in the kernel's parser; our values never contain
    # blanks, so dropping the quotes and splitting on blanks finds them.
    while :; do
        case $_line in
        *'"'*) _line=${_line%%'"'*}${_line#*'"'} ;;
        *) break ;;
        esac
    done
    set -f
    # shellcheck disable=SC2086 # word splitting is the point
    set -- $_line
    set +f
    for _w in "$@"; do
        case $_w in
        "$_key") _found='=' ;;
        "$_key"=*) _found="=${_w#"$_key"=}" ;;
        esac
    done
    [ -z "$_found" ] || printf '%s\n' "$_found"
}

write_status() {
    # $1 result, $2 fetch exit, $3 reason (may be empty)
    mkdir -p "$SATCHEL_STATUS_DIR" 2>/dev/null || true
    {
        printf 'result=%s\n' "$1"
        printf 'required=%s\n' "$required"
        printf 'fetch_exit=%s\n' "$2"
        [ -z "$3" ] || printf 'reason=%s\n' "$3"
    } >"$SATCHEL_STATUS_DIR/status.tmp" 2>/dev/null
    if ! mv -f "$SATCHEL_STATUS_DIR/status.tmp" "$SATCHEL_STATUS_DIR/status" 2>/dev/null; then
        log "cannot write $SATCHEL_STATUS_DIR/status"
    fi
}

finish() {
    # $1 fetch exit, $2 reason (empty on success)
    if [ "$1" = 0 ]; then
        write_status ok 0 ""
        kmsg 6 "configuration applied"
        exit 0
    fi
    write_status failed "$1" "$2"
    if [ "$required" = 1 ]; then
        kmsg 3 "FAILED ($2); satchel.required=1: stopping the boot"
        exit 1
    fi
    kmsg 4 "FAILED ($2); satchel.required=0: booting with the image's defaults"
    exit 0
}

# --- policy from the command line ---------------------------------------
required=$DEFAULT_REQUIRED
v=$(cmdline_value satchel.required)
case $v in
'') ;;
=0 | =n | =no | =false | =off) required=0 ;;
= | =1 | =y | =yes | =true | =on) required=1 ;;
*)
    log "satchel.required${v} is not 0 or 1; treating it as 1"
    required=1
    ;;
esac

deadline=$DEFAULT_TIMEOUT
v=$(cmdline_value satchel.timeout)
case $v in
'') ;;
=*[!0-9]* | =) log "satchel.timeout${v} is not a number of seconds; using $DEFAULT_TIMEOUT" ;;
*)
    # Decimal, as the fetcher reads it: drop leading zeros (sh would read octal).
    v=${v#=}
    v=${v#"${v%%[!0]*}"}
    if [ -z "$v" ]; then
        log "satchel.timeout=0 is not a positive number of seconds; using $DEFAULT_TIMEOUT"
    else
        if [ "${#v}" -gt 6 ] || [ "$v" -gt "$MAX_TIMEOUT" ]; then
            v=$MAX_TIMEOUT
        fi
        deadline=$v
    fi
    ;;
esac

# --- run ----------------------------------------------------------------
if [ -r "$SATCHEL_STATUS_DIR/status" ]; then
    while IFS= read -r line; do
        if [ "$line" = result=ok ]; then
            log "already applied in this boot; nothing to do"
            exit 0
        fi
    done <"$SATCHEL_STATUS_DIR/status"
fi
if [ ! -x "$SATCHEL_FETCH" ]; then
    finish 127 "no fetcher at $SATCHEL_FETCH"
fi
if [ ! -r "$SATCHEL_CONFIG" ]; then
    finish 126 "no node config at $SATCHEL_CONFIG"
fi

budget=$((deadline + HOOK_GRACE))
log "running $SATCHEL_FETCH (satchel.required=$required, deadline ${deadline}s)"
started=$(date +%s 2>/dev/null) || started=
if command -v timeout >/dev/null 2>&1; then
    timeout -s TERM -k "$HOOK_KILL_AFTER" "$budget" "$SATCHEL_FETCH" --config "$SATCHEL_CONFIG"
    rc=$?
    # coreutils' timeout exits 124 when it stopped the fetcher; busybox's
    # runs the fetcher in its own process, which then dies of SIGTERM (or
    # of SIGKILL after -k). A signal death once the budget has passed is
    # the timeout too.
    ended=$(date +%s 2>/dev/null) || ended=
    case $rc in
    124) finish 124 "the fetcher ran past ${budget}s and was stopped" ;;
    137 | 143)
        if [ -n "$started" ] && [ -n "$ended" ] && [ $((ended - started)) -ge "$budget" ]; then
            finish 124 "the fetcher ran past ${budget}s and was stopped"
        fi
        ;;
    esac
else
    # No timeout(1) in this initrd: the fetcher's own deadline bounds it.
    "$SATCHEL_FETCH" --config "$SATCHEL_CONFIG"
    rc=$?
fi
if [ "$rc" = 0 ]; then
    finish 0 ""
fi
if [ "$rc" -gt 128 ]; then
    finish "$rc" "the fetcher died of signal $((rc - 128))"
fi
finish "$rc" "the fetcher exited with status $rc"
