#!/usr/bin/env bash
# Install the Debian packages the test servers need, if any is missing.
#
#   bash tests/harness/install-deps.sh
#
# Runs `apt-get update` once, and only when something has to be installed.
# While installing, a temporary /usr/sbin/policy-rc.d (exit 101) keeps the
# packages' maintainer scripts from starting system daemons; whatever
# policy-rc.d was there before is put back afterwards.
# A system slapd (Debian's own, /var/run/slapd/slapd.pid) is stopped if it
# runs, since it would hold the LDAP port 389 that the Samba DC needs.
set -euo pipefail

# shellcheck source=tests/harness/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
    samba samba-ad-provision samba-dsdb-modules samba-vfs-modules
    ldb-tools slapd ldap-utils openssl python3
)
POLICY=/usr/sbin/policy-rc.d

is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

# stop_system_daemon PIDFILE COMM...: stop the daemon in PIDFILE if it is
# alive and its process name is one of COMM.
stop_system_daemon() {
    local pidfile=$1 pid comm want deadline
    shift
    [[ -r $pidfile ]] || return 0
    pid="$(tr -dc '0-9' <"$pidfile")"
    pid_alive "$pid" || return 0
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 0
    for want in "$@"; do
        if [[ $comm == "$want" ]]; then
            log "stopping system $comm (PID $pid from $pidfile)"
            kill -TERM "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 15))
            while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
            pid_alive "$pid" && die "system $comm (PID $pid) did not stop"
            return 0
        fi
    done
}

missing=()
for p in "${PACKAGES[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); run as root to install them"
    log "installing: ${missing[*]}"

    saved="$(mktemp -d)"
    had_policy=0
    if [[ -e $POLICY || -L $POLICY ]]; then
        cp -a "$POLICY" "$saved/policy-rc.d"
        had_policy=1
    fi
    restore_policy() {
        if ((had_policy)); then
            cp -a "$saved/policy-rc.d" "$POLICY.tansync-restore"
            mv -f "$POLICY.tansync-restore" "$POLICY"
        else
            rm -f "$POLICY"
        fi
        rm -rf "$saved"
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\n# temporary, from tansync tests/harness/install-deps.sh\nexit 101\n' \
        >"$POLICY.tansync-tmp"
    chmod 755 "$POLICY.tansync-tmp"
    mv -f "$POLICY.tansync-tmp" "$POLICY"

    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"

    restore_policy
    trap - EXIT

    # Should a maintainer script have started Samba's system daemons anyway,
    # stop exactly those (their own PID files).
    for d in samba smbd nmbd winbindd; do
        stop_system_daemon "/run/samba/$d.pid" "$d"
    done
fi

stop_system_daemon /var/run/slapd/slapd.pid slapd

for p in "${PACKAGES[@]}"; do
    is_installed "$p" || die "package $p is still not installed"
done
