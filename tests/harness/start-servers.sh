#!/usr/bin/env bash
# Start the tansync test servers in WORKDIR and write WORKDIR/env.sh.
#
#   bash tests/harness/start-servers.sh WORKDIR
#
# Starts a Samba AD DC (LDAP 389 / LDAPS 636 / Kerberos KDC 88 on 127.0.0.1) and an OpenLDAP
# slapd (LDAP 3389 / LDAPS 3636 on 127.0.0.1), both loaded with the fixture
# from tests/fixtures/gen_fixture.py and using a throw-away test PKI.
# Stop them with tests/harness/stop-servers.sh WORKDIR.
# The packages must already be installed (run-all.sh installs them).
set -euo pipefail

# shellcheck source=tests/harness/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || die "usage: start-servers.sh WORKDIR"
WORKDIR="$(abs_dir "$1")"

SAMBA_REALM=TANSYNC.TEST
SAMBA_DOMAIN=TANSYNC
SAMBA_BASE="DC=tansync,DC=test"
SAMBA_BIND_DN="CN=Administrator,CN=Users,$SAMBA_BASE"
SLAPD_BASE="dc=example,dc=org"
SLAPD_BIND_DN="cn=admin,$SLAPD_BASE"
SLAPD_LIMITED_DN="cn=limited,$SLAPD_BASE"
SLAPD_SIZE_LIMIT=700
# Kerberos: a service account that binds with a keytab (never a password).
SAMBA_HOST=tansyncdc.tansync.test
KRB5_SERVICE_USER=svc-tansync
KRB5_OTHER_USER=svc-other
# Ports Samba (with "server services = ldap cldap kdc": LDAP, GC, the KDC and
# kpasswd) and slapd listen on.
SERVER_PORTS=(88 389 464 636 3268 3269 3389 3636)
WAIT_SECONDS=60

PKI="$WORKDIR/pki"
SECRETS="$WORKDIR/secrets"
FIXTURE="$WORKDIR/fixture"
PIDS="$WORKDIR/pids"
SAMBA_DIR="$WORKDIR/samba"
SLAPD_DIR="$WORKDIR/slapd"
KRB5_DIR="$WORKDIR/krb5"
SAMBA_LOG="$SAMBA_DIR/log/samba.out"
SLAPD_LOG="$SLAPD_DIR/slapd.log"

# ---------------------------------------------------------------- preflight
export PATH="$PATH:/usr/sbin:/sbin"
for tool in samba samba-tool ldbadd slapd slapadd slappasswd ldapsearch openssl python3; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' not found; install the packages first (bash tests/harness/install-deps.sh)"
done

# The Python tools (install-deps.sh), whose paths env.sh exports.
SCIM2_CLI="$PYTOOLS_DIR/bin/scim2"
SCIM2_SERVER="$PYTOOLS_DIR/bin/scim2-server"
for tool in "$SCIM2_CLI" "$SCIM2_SERVER"; do
    [[ -x $tool ]] ||
        die "'$tool' not found; install the Python test tools first (bash tests/harness/install-deps.sh)"
done

for name in samba slapd; do
    if [[ -f $PIDS/$name.pid ]] && pid_alive "$(cat "$PIDS/$name.pid")"; then
        die "$name from an earlier run is still running in $WORKDIR (PID $(cat "$PIDS/$name.pid")); run: bash tests/harness/stop-servers.sh $WORKDIR"
    fi
done
for port in "${SERVER_PORTS[@]}"; do
    if port_open "$port"; then
        die "port 127.0.0.1:$port is already in use (another LDAP server?); stop it first"
    fi
done

# Fresh state for everything this script owns inside WORKDIR.
rm -rf "$PKI" "$SECRETS" "$FIXTURE" "$PIDS" "$SAMBA_DIR" "$SLAPD_DIR" "$KRB5_DIR" "$WORKDIR/env.sh"
mkdir -p "$PKI" "$SECRETS" "$FIXTURE" "$PIDS" "$KRB5_DIR"
chmod 700 "$SECRETS" "$KRB5_DIR"

# On any failure: show what the servers said and stop whatever was started.
# STAGE_LOGS names the logs worth showing if the current stage fails.
STARTED_OK=0
STAGE_LOGS=()
on_exit() {
    local rc=$? f
    if [[ $STARTED_OK -ne 1 ]]; then
        log "start failed (exit $rc)"
        for f in "${STAGE_LOGS[@]}"; do show_log_tail "$f" 40; done
        bash "$HARNESS_DIR/stop-servers.sh" "$WORKDIR" >&2 || true
        [[ $rc -ne 0 ]] || rc=1
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

T0=$SECONDS

# ---------------------------------------------------------------- PKI + data
log "creating test PKI and fixture"
bash "$HARNESS_DIR/pki.sh" "$PKI"
python3 "$REPO_ROOT/tests/fixtures/gen_fixture.py" --out "$FIXTURE"
for f in ad.ldif openldap.ldif; do
    [[ -s $FIXTURE/$f ]] || die "gen_fixture.py did not write $FIXTURE/$f"
done

SAMBA_PASSWORD="$(gen_password)"
SLAPD_PASSWORD="$(gen_password)"
SLAPD_LIMITED_PASSWORD="$(gen_password)"
write_secret "$SECRETS/samba-admin.password" "$SAMBA_PASSWORD"
write_secret "$SECRETS/slapd-admin.password" "$SLAPD_PASSWORD"
write_secret "$SECRETS/slapd-limited.password" "$SLAPD_LIMITED_PASSWORD"

# ---------------------------------------------------------------- Samba AD DC
log "provisioning Samba AD DC ($SAMBA_REALM)"
STAGE_LOGS=("$WORKDIR/provision.log")
t=$SECONDS
mkdir -p "$SAMBA_DIR/run" "$SAMBA_DIR/log"
# Provision from an empty base config so /etc/samba/smb.conf does not leak in.
: >"$SAMBA_DIR/base.conf"
samba-tool domain provision \
    --configfile="$SAMBA_DIR/base.conf" \
    --targetdir="$SAMBA_DIR" \
    --realm="$SAMBA_REALM" --domain="$SAMBA_DOMAIN" \
    --host-name=tansyncdc \
    --server-role=dc --dns-backend=NONE --use-rfc2307 \
    --adminpass="$SAMBA_PASSWORD" \
    --option="netbios name = TANSYNCDC" \
    --option="interfaces = lo" \
    --option="bind interfaces only = yes" \
    --option="server services = ldap cldap kdc" \
    --option="ldap server require strong auth = allow_sasl_over_tls" \
    --option="tls enabled = yes" \
    --option="tls keyfile = $PKI/server.key" \
    --option="tls certfile = $PKI/server.pem" \
    --option="tls cafile = $PKI/ca.pem" \
    --option="pid directory = $SAMBA_DIR/run" \
    --option="ncalrpc dir = $SAMBA_DIR/run/ncalrpc" \
    --option="winbindd socket directory = $SAMBA_DIR/run/winbindd" \
    --option="ntp signd socket directory = $SAMBA_DIR/run/ntp_signd" \
    --option="log file = $SAMBA_DIR/log/log.%m" \
    --option="log level = 1" \
    >"$WORKDIR/provision.log" 2>&1 ||
    die "samba-tool domain provision failed"
SMB_CONF="$SAMBA_DIR/etc/smb.conf"
log "provisioned in $((SECONDS - t)) s"

# "ldap server require strong auth = allow_sasl_over_tls": simple binds still
# need TLS, and a GSSAPI bind without a SASL signing layer is accepted over TLS,
# as Windows DCs and Samba 4.20+ accept it (Debian 12's Samba 4.17 refuses it
# with "Sign or Seal are required" under the default "yes"; tansync's Kerberos
# bind relies on TLS, since ldap3 has no SASL protection layer).

# Load the AD fixture offline, straight into sam.ldb, before Samba starts.
# The relax control is what lets an entry carry its own objectGUID; Samba's
# LDAP server does not accept that control from clients, so this cannot be
# done over LDAP.
log "loading $(grep -c '^dn:' "$FIXTURE/ad.ldif") AD entries"
t=$SECONDS
STAGE_LOGS=("$WORKDIR/ad-load.log")
ldbadd --configfile="$SMB_CONF" -H "$SAMBA_DIR/private/sam.ldb" --relax \
    "$FIXTURE/ad.ldif" >"$WORKDIR/ad-load.log" 2>&1 ||
    die "ldbadd of ad.ldif into Samba failed"
log "loaded in $((SECONDS - t)) s"

# Kerberos service accounts and their keytabs, offline like the fixture. The
# passwords are random (samba-tool's own) and never leave sam.ldb; the keytabs
# are what tests/kerberos.rs binds with:
#   svc-tansync.keytab        the account's current keys
#   svc-tansync-stale.keytab  its keys before a password change (a wrong key, an
#                             old key version)
#   svc-other.keytab          another account's keys only
log "creating Kerberos service accounts and keytabs"
STAGE_LOGS=("$WORKDIR/krb5-setup.log")
export_keytab() {
    rm -f "$2"
    samba-tool domain exportkeytab "$2" --principal="$1@$SAMBA_REALM" \
        --configfile="$SMB_CONF" || return 1
    chmod 600 "$2"
}
# Every step checked on its own (set -e does not apply inside `|| die`).
krb5_setup() {
    local u db=("--configfile=$SMB_CONF" -H "$SAMBA_DIR/private/sam.ldb")
    # As a Windows DC registers it: the service principal LDAP clients ask a
    # ticket for (Samba's provision gives the DC host/ names only).
    samba-tool spn add "ldap/$SAMBA_HOST" 'TANSYNCDC$' "${db[@]}" || return 1
    for u in "$KRB5_SERVICE_USER" "$KRB5_OTHER_USER"; do
        samba-tool user add "$u" --random-password "${db[@]}" || return 1
    done
    export_keytab "$KRB5_SERVICE_USER" "$KRB5_DIR/$KRB5_SERVICE_USER-stale.keytab" || return 1
    samba-tool user setpassword "$KRB5_SERVICE_USER" --random-password "${db[@]}" || return 1
    export_keytab "$KRB5_SERVICE_USER" "$KRB5_DIR/$KRB5_SERVICE_USER.keytab" || return 1
    export_keytab "$KRB5_OTHER_USER" "$KRB5_DIR/$KRB5_OTHER_USER.keytab"
}
krb5_setup >"$WORKDIR/krb5-setup.log" 2>&1 || die "creating the Kerberos service accounts failed"
for f in "$KRB5_SERVICE_USER" "$KRB5_SERVICE_USER-stale" "$KRB5_OTHER_USER"; do
    [[ -s $KRB5_DIR/$f.keytab ]] || die "samba-tool wrote no keytab $KRB5_DIR/$f.keytab"
done
# The client configuration the tests give tansync (KRB5_CONFIG): the DC's KDC
# on loopback, no DNS at all, host names used as written (the DC is reached
# by IP; its service principal comes from source.sasl_host).
cat >"$KRB5_DIR/krb5.conf" <<EOF
[libdefaults]
    default_realm = $SAMBA_REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1

[realms]
    $SAMBA_REALM = {
        kdc = 127.0.0.1:88
    }

[domain_realm]
    $SAMBA_HOST = $SAMBA_REALM
    .tansync.test = $SAMBA_REALM
EOF

log "starting samba"
STAGE_LOGS=("$SAMBA_LOG")
# setsid: own session and process group, so a Ctrl-C in the terminal reaches
# the harness (which stops the servers in order) and not the servers directly.
# -i: foreground, log to stdout; with stdin from /dev/null it keeps running
# (checked with Samba 4.17).
setsid samba -i -s "$SMB_CONF" </dev/null >"$SAMBA_LOG" 2>&1 &
SAMBA_PID=$!
echo "$SAMBA_PID" >"$PIDS/samba.pid"

# ---------------------------------------------------------------- slapd
log "configuring slapd"
mkdir -p "$SLAPD_DIR/data"
SLAPD_CONF="$SLAPD_DIR/slapd.conf"
admin_hash="$(slappasswd -h '{SSHA}' -s "$SLAPD_PASSWORD")"
limited_hash="$(slappasswd -h '{SSHA}' -s "$SLAPD_LIMITED_PASSWORD")"
# The "limited" identity may read everything, but any search (paged or not) ends with
# sizeLimitExceeded (4) after $SLAPD_SIZE_LIMIT entries in total.
slapd_conf tests/harness/start-servers.sh "$SLAPD_DIR" "$PKI" "$SLAPD_BASE" "$SLAPD_BIND_DN" \
    "$admin_hash" 1073741824 \
    "limits dn.exact=\"$SLAPD_LIMITED_DN\" size.soft=$SLAPD_SIZE_LIMIT size.hard=$SLAPD_SIZE_LIMIT size.prtotal=$SLAPD_SIZE_LIMIT" \
    >"$SLAPD_CONF"
cat >"$SLAPD_DIR/extra.ldif" <<EOF
dn: $SLAPD_LIMITED_DN
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: limited
description: bind identity whose searches hit a size limit after $SLAPD_SIZE_LIMIT entries
userPassword: $limited_hash
EOF
log "loading $(grep -c '^dn:' "$FIXTURE/openldap.ldif") OpenLDAP entries"
t=$SECONDS
STAGE_LOGS=("$SAMBA_LOG" "$WORKDIR/slapd-load.log")
{
    slapadd -q -f "$SLAPD_CONF" -l "$FIXTURE/openldap.ldif" &&
        slapadd -q -f "$SLAPD_CONF" -l "$SLAPD_DIR/extra.ldif"
} >"$WORKDIR/slapd-load.log" 2>&1 || die "slapadd failed"
log "loaded in $((SECONDS - t)) s"

log "starting slapd"
STAGE_LOGS=("$SAMBA_LOG" "$SLAPD_LOG")
# -d keeps slapd in the foreground (so $! is its PID) and logs to stderr.
setsid slapd -d stats -f "$SLAPD_CONF" \
    -h "ldap://127.0.0.1:3389/ ldaps://127.0.0.1:3636/" </dev/null >"$SLAPD_LOG" 2>&1 &
SLAPD_PID=$!
echo "$SLAPD_PID" >"$PIDS/slapd.pid"

# ---------------------------------------------------------------- wait
# wait_ldaps NAME PID URL: bounded wait until URL answers a rootDSE search
# verified against the test CA.
wait_ldaps() {
    local name=$1 pid=$2 url=$3 deadline=$((SECONDS + WAIT_SECONDS))
    while ((SECONDS < deadline)); do
        pid_alive "$pid" || die "$name (PID $pid) exited during start-up"
        if LDAPTLS_CACERT="$PKI/ca.pem" LDAPTLS_REQCERT=demand \
            ldapsearch -x -o nettimeout=2 -H "$url" -s base -b '' '(objectClass=*)' \
            namingContexts >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.3
    done
    die "$name did not answer on $url within ${WAIT_SECONDS}s"
}

# check_bind NAME URL DN PASSWORD_FILE BASE [-ZZ]: an authenticated base
# search, TLS verified against the test CA.
check_bind() {
    local name=$1 url=$2 dn=$3 pwfile=$4 base=$5
    shift 5
    LDAPTLS_CACERT="$PKI/ca.pem" LDAPTLS_REQCERT=demand \
        ldapsearch -x "$@" -o nettimeout=5 -H "$url" -D "$dn" -y "$pwfile" \
        -s base -b "$base" '(objectClass=*)' 1.1 >/dev/null ||
        die "$name: authenticated search on $url $* failed"
}

wait_ldaps samba "$SAMBA_PID" ldaps://127.0.0.1:636
log "samba answers on LDAPS (start-up $((SECONDS - T0)) s since begin)"
wait_ldaps slapd "$SLAPD_PID" ldaps://127.0.0.1:3636
log "slapd answers on LDAPS"

check_bind samba ldaps://127.0.0.1:636 "$SAMBA_BIND_DN" "$SECRETS/samba-admin.password" "$SAMBA_BASE"
check_bind samba ldap://127.0.0.1:389 "$SAMBA_BIND_DN" "$SECRETS/samba-admin.password" "$SAMBA_BASE" -ZZ
check_bind slapd ldaps://127.0.0.1:3636 "$SLAPD_BIND_DN" "$SECRETS/slapd-admin.password" "$SLAPD_BASE"
check_bind slapd ldap://127.0.0.1:3389 "$SLAPD_BIND_DN" "$SECRETS/slapd-admin.password" "$SLAPD_BASE" -ZZ
check_bind slapd ldaps://127.0.0.1:3636 "$SLAPD_LIMITED_DN" "$SECRETS/slapd-limited.password" "$SLAPD_BASE"
log "admin binds work over LDAPS and StartTLS on both servers"

# ---------------------------------------------------------------- env.sh
# Single-quoted values, so the file reads the same to any sh-like parser.
env_line() {
    local sq="'\\''"
    printf "export %s='%s'\n" "$1" "${2//\'/$sq}"
}
{
    echo "# Generated by tests/harness/start-servers.sh; source it before cargo test."
    env_line TANSYNC_TEST_WORKDIR "$WORKDIR"
    env_line TANSYNC_TEST_CA "$PKI/ca.pem"
    env_line TANSYNC_TEST_WRONG_CA "$PKI/wrong-ca.pem"
    env_line TANSYNC_TEST_FIXTURE_DIR "$FIXTURE"
    env_line TANSYNC_TEST_SAMBA_LDAPS_URL ldaps://127.0.0.1:636
    env_line TANSYNC_TEST_SAMBA_LDAP_URL ldap://127.0.0.1:389
    env_line TANSYNC_TEST_SAMBA_BASE "$SAMBA_BASE"
    env_line TANSYNC_TEST_SAMBA_BIND_DN "$SAMBA_BIND_DN"
    env_line TANSYNC_TEST_SAMBA_PASSWORD_FILE "$SECRETS/samba-admin.password"
    env_line TANSYNC_TEST_SAMBA_PID "$SAMBA_PID"
    env_line TANSYNC_TEST_SAMBA_HOST "$SAMBA_HOST"
    env_line TANSYNC_TEST_KRB5_CONFIG "$KRB5_DIR/krb5.conf"
    env_line TANSYNC_TEST_KRB5_PRINCIPAL "$KRB5_SERVICE_USER@$SAMBA_REALM"
    env_line TANSYNC_TEST_KEYTAB "$KRB5_DIR/$KRB5_SERVICE_USER.keytab"
    env_line TANSYNC_TEST_STALE_KEYTAB "$KRB5_DIR/$KRB5_SERVICE_USER-stale.keytab"
    env_line TANSYNC_TEST_KRB5_OTHER_PRINCIPAL "$KRB5_OTHER_USER@$SAMBA_REALM"
    env_line TANSYNC_TEST_OTHER_KEYTAB "$KRB5_DIR/$KRB5_OTHER_USER.keytab"
    env_line TANSYNC_TEST_SLAPD_LDAPS_URL ldaps://127.0.0.1:3636
    env_line TANSYNC_TEST_SLAPD_LDAP_URL ldap://127.0.0.1:3389
    env_line TANSYNC_TEST_SLAPD_BASE "$SLAPD_BASE"
    env_line TANSYNC_TEST_SLAPD_BIND_DN "$SLAPD_BIND_DN"
    env_line TANSYNC_TEST_SLAPD_PASSWORD_FILE "$SECRETS/slapd-admin.password"
    env_line TANSYNC_TEST_SLAPD_LIMITED_BIND_DN "$SLAPD_LIMITED_DN"
    env_line TANSYNC_TEST_SLAPD_LIMITED_PASSWORD_FILE "$SECRETS/slapd-limited.password"
    env_line TANSYNC_TEST_SLAPD_PID "$SLAPD_PID"
    env_line TANSYNC_TEST_SCIM2_CLI "$SCIM2_CLI"
    env_line TANSYNC_TEST_SCIM2_SERVER "$SCIM2_SERVER"
} >"$WORKDIR/env.sh"

STARTED_OK=1
log "servers up in $((SECONDS - T0)) s (samba PID $SAMBA_PID, slapd PID $SLAPD_PID); env: $WORKDIR/env.sh"
