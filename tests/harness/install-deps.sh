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
#
# The package test (tests/package.sh) needs dpkg (there on Debian), systemd for
# systemd-analyze and systemd-sysusers (installed, not started), and cargo-deb: installed
# with `cargo install --locked cargo-deb` when missing (a few minutes' compile, once).
#
# Then the Python tools of python-requirements.txt (pinned) go into a
# virtualenv of their own, $PYTOOLS_DIR (default target/pytools), so the
# system's Python is left alone. That is redone only when the pins change or
# the virtualenv is missing or broken.
set -euo pipefail

# shellcheck source=tests/harness/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
    samba samba-ad-provision samba-dsdb-modules samba-vfs-modules
    ldb-tools slapd ldap-utils openssl python3 python3-venv
    systemd util-linux
    # Kerberos (the `kerberos` feature the suite builds with): bindgen needs clang
    # and libclang, the GSSAPI bindings need MIT krb5's headers; krb5-user gives
    # kinit/klist for looking at the harness's keytab by hand.
    clang libclang-dev libkrb5-dev krb5-user
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

# cargo-deb builds the Debian package (tests/package.sh); pinned by its own lock file.
if ! command -v cargo-deb >/dev/null 2>&1; then
    log "installing cargo-deb (cargo install --locked cargo-deb; a few minutes)"
    # Its own target dir: the install must not share (or wipe) the project's.
    CARGO_TARGET_DIR="$(mktemp -d)" cargo install --locked cargo-deb ||
        die "cargo install cargo-deb failed"
fi
command -v cargo-deb >/dev/null 2>&1 || die "cargo-deb is not on PATH after the install"

# install_python_tools: the pinned Python tools, in their own virtualenv.
install_python_tools() {
    local req="$HARNESS_DIR/python-requirements.txt"
    local stamp="$PYTOOLS_DIR/installed-requirements.txt"
    if [[ -f $stamp ]] && cmp -s "$req" "$stamp" &&
        "$PYTOOLS_DIR/bin/python" -c '' 2>/dev/null &&
        [[ -x $PYTOOLS_DIR/bin/scim2 && -x $PYTOOLS_DIR/bin/scim2-server ]]; then
        return 0
    fi
    # Only ever wipe a virtualenv (or an empty folder): TANSYNC_PYTOOLS_DIR may
    # point anywhere.
    if [[ -d $PYTOOLS_DIR && ! -f $PYTOOLS_DIR/pyvenv.cfg ]] &&
        [[ -n "$(ls -A "$PYTOOLS_DIR")" ]]; then
        die "$PYTOOLS_DIR exists and is not a virtualenv; remove it or set TANSYNC_PYTOOLS_DIR"
    fi
    log "installing the Python test tools into $PYTOOLS_DIR"
    command -v python3 >/dev/null 2>&1 || die "python3 not found"
    python3 -m venv --clear "$PYTOOLS_DIR" || die "cannot create a virtualenv in $PYTOOLS_DIR"
    "$PYTOOLS_DIR/bin/python" -m pip install --quiet --disable-pip-version-check \
        --requirement "$req" || die "pip could not install $req"
    for tool in scim2 scim2-server; do
        [[ -x $PYTOOLS_DIR/bin/$tool ]] || die "$PYTOOLS_DIR/bin/$tool is missing after the install"
    done
    # Written last: a half-done install is redone next time.
    cp "$req" "$stamp"
}
install_python_tools
