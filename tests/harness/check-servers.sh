#!/usr/bin/env bash
# Sanity checks of running test servers (start-servers.sh WORKDIR first).
#
#   bash tests/harness/check-servers.sh WORKDIR
#
# Proves the harness is what the Rust tests assume: TLS verified with the
# test CA and refused with the wrong CA, Samba refusing a simple bind
# without TLS, the AD fixture loaded with its own objectGUIDs, memberOf and
# the in-chain matching rule working, and slapd's "limited" identity
# hitting sizeLimitExceeded. Exits non-zero on the first failed check.
set -euo pipefail

# shellcheck source=tests/harness/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || die "usage: check-servers.sh WORKDIR"
WORKDIR="$(abs_dir "$1")"
[[ -f $WORKDIR/env.sh ]] || die "$WORKDIR/env.sh not found; run start-servers.sh first"
# shellcheck source=/dev/null
. "$WORKDIR/env.sh"

TMP="$WORKDIR/check"
rm -rf "$TMP"
mkdir -p "$TMP"
export LDAPTLS_REQCERT=demand

ok() { log "ok: $*"; }

# search CA URL DN PWFILE BASE [ldapsearch args...]
search() {
    local ca=$1 url=$2 dn=$3 pw=$4 base=$5
    shift 5
    LDAPTLS_CACERT="$ca" ldapsearch -LLL -x -o ldif-wrap=no -o nettimeout=5 \
        -H "$url" -D "$dn" -y "$pw" -b "$base" "$@"
}

# expect_fail WHAT COMMAND...: the command must fail.
expect_fail() {
    local what=$1
    shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then
        die "$what unexpectedly succeeded"
    fi
    ok "$what refused: $(tr '\n' ' ' <"$TMP/err")"
}

S_ADMIN=("$TANSYNC_TEST_SAMBA_BIND_DN" "$TANSYNC_TEST_SAMBA_PASSWORD_FILE")
O_ADMIN=("$TANSYNC_TEST_SLAPD_BIND_DN" "$TANSYNC_TEST_SLAPD_PASSWORD_FILE")

# --- TLS: right CA works, wrong CA is refused, on both servers, both modes.
for srv in SAMBA SLAPD; do
    ldaps_var="TANSYNC_TEST_${srv}_LDAPS_URL" ldap_var="TANSYNC_TEST_${srv}_LDAP_URL"
    base_var="TANSYNC_TEST_${srv}_BASE"
    if [[ $srv == SAMBA ]]; then creds=("${S_ADMIN[@]}"); else creds=("${O_ADMIN[@]}"); fi
    search "$TANSYNC_TEST_CA" "${!ldaps_var}" "${creds[@]}" "${!base_var}" -s base 1.1 >/dev/null
    search "$TANSYNC_TEST_CA" "${!ldap_var}" "${creds[@]}" "${!base_var}" -ZZ -s base 1.1 >/dev/null
    ok "$srv: LDAPS and StartTLS verified with the test CA"
    expect_fail "$srv LDAPS with the wrong CA" \
        search "$TANSYNC_TEST_WRONG_CA" "${!ldaps_var}" "${creds[@]}" "${!base_var}" -s base 1.1
    expect_fail "$srv StartTLS with the wrong CA" \
        search "$TANSYNC_TEST_WRONG_CA" "${!ldap_var}" "${creds[@]}" "${!base_var}" -ZZ -s base 1.1
done

# --- Samba refuses a simple bind over plain LDAP.
rc=0
ldapsearch -LLL -x -o nettimeout=5 -H "$TANSYNC_TEST_SAMBA_LDAP_URL" -D "${S_ADMIN[0]}" \
    -y "${S_ADMIN[1]}" -b "$TANSYNC_TEST_SAMBA_BASE" -s base 1.1 >/dev/null 2>"$TMP/err" || rc=$?
[[ $rc -eq 8 ]] || die "Samba plain-LDAP simple bind: expected exit 8 (strongAuthRequired), got $rc: $(cat "$TMP/err")"
ok "Samba simple bind without TLS refused: $(tr '\n' ' ' <"$TMP/err")"

# --- AD fixture: objectGUIDs, memberOf, in-chain matching rule.
search "$TANSYNC_TEST_CA" "$TANSYNC_TEST_SAMBA_LDAPS_URL" "${S_ADMIN[@]}" \
    "$TANSYNC_TEST_SAMBA_BASE" -E pr=1000/noprompt '(objectClass=*)' objectGUID memberOf \
    >"$TMP/ad-server.ldif"
mkdir -p "$TMP/inchain"
i=0
while IFS= read -r group; do
    search "$TANSYNC_TEST_CA" "$TANSYNC_TEST_SAMBA_LDAPS_URL" "${S_ADMIN[@]}" \
        "$TANSYNC_TEST_SAMBA_BASE" "(memberOf:1.2.840.113556.1.4.1941:=$group)" 1.1 \
        >"$TMP/inchain/$i"
    i=$((i + 1))
done < <(python3 "$HARNESS_DIR/check_ad_fixture.py" "$TANSYNC_TEST_FIXTURE_DIR/ad.ldif" --nested-groups)
[[ $i -gt 0 ]] || log "warning: ad.ldif has no nested group; in-chain rule not checked"
ok "$(python3 "$HARNESS_DIR/check_ad_fixture.py" "$TANSYNC_TEST_FIXTURE_DIR/ad.ldif" \
    "$TMP/ad-server.ldif" "$TMP/inchain")"

# --- slapd: the limited identity's paged search ends in sizeLimitExceeded.
total="$(search "$TANSYNC_TEST_CA" "$TANSYNC_TEST_SLAPD_LDAPS_URL" "${O_ADMIN[@]}" \
    "$TANSYNC_TEST_SLAPD_BASE" -E pr=500/noprompt '(objectClass=*)' 1.1 | grep -c '^dn:')"
if ((total <= 700)); then
    log "warning: slapd holds only $total entries; size-limit check skipped"
else
    rc=0
    search "$TANSYNC_TEST_CA" "$TANSYNC_TEST_SLAPD_LDAPS_URL" \
        "$TANSYNC_TEST_SLAPD_LIMITED_BIND_DN" "$TANSYNC_TEST_SLAPD_LIMITED_PASSWORD_FILE" \
        "$TANSYNC_TEST_SLAPD_BASE" -E pr=500/noprompt '(objectClass=*)' 1.1 \
        >"$TMP/limited.ldif" 2>"$TMP/err" || rc=$?
    got="$(grep -c '^dn:' "$TMP/limited.ldif" || true)"
    [[ $rc -eq 4 ]] || die "limited paged search: expected exit 4 (sizeLimitExceeded), got $rc ($got entries)"
    ok "slapd limited paged search: $got of $total entries, then $(tr '\n' ' ' <"$TMP/err")"
fi
# --- Kerberos: the KDC answers on 127.0.0.1:88 and issues a ticket from the
# service account's keytab, not from its stale one (krb5-user's kinit, its
# tickets in memory only).
kinit_keytab() {
    KRB5_CONFIG="$TANSYNC_TEST_KRB5_CONFIG" KRB5CCNAME=MEMORY:check \
        kinit -k -t "$1" "$TANSYNC_TEST_KRB5_PRINCIPAL"
}
kinit_keytab "$TANSYNC_TEST_KEYTAB" >"$TMP/out" 2>"$TMP/err" ||
    die "kinit with $TANSYNC_TEST_KEYTAB failed: $(tr '\n' ' ' <"$TMP/err")"
ok "Samba KDC: a ticket for $TANSYNC_TEST_KRB5_PRINCIPAL from its keytab"
expect_fail "kinit with the stale keytab" kinit_keytab "$TANSYNC_TEST_STALE_KEYTAB"
log "all harness checks passed"
