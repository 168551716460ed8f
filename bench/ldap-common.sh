# shellcheck shell=bash
# Shared by bench/ldap-plan.sh and bench/delta.sh: a throw-away back_mdb slapd loaded
# with bench/gen_users.py's users (LDAPS with the test CA), and tansync's filter rules and
# agreements for them. Sourced, not executed. The caller sets BENCH_DIR, ROOT, OUT,
# COUNT, LDAP_PORT, LDAPS_PORT and TANSYNC (and may define bench_cleanup, run on exit
# before slapd is stopped), then calls bench_preflight TOOLS…, bench_start_slapd and
# bench_write_rules.

# Helpers shared with the test harness: gen_password, write_secret, pid_alive, port_open.
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

WAIT_SECONDS=60
STOP_SECONDS=20
PKI="$OUT/pki"
SLAPD_DIR="$OUT/slapd"
SLAPD_LOG="$SLAPD_DIR/slapd.log"
SLAPD_PIDFILE="$OUT/slapd.pid"
SUFFIX="dc=bench,dc=org"
PEOPLE="ou=people,$SUFFIX"
BIND_DN="cn=admin,$SUFFIX"
AGENT_ID="tansync-bench"
LDAPS_URL="ldaps://127.0.0.1:$LDAPS_PORT"
FILTER='(objectClass=inetOrgPerson)'
PAGE=1000

export PATH="$PATH:/usr/sbin:/sbin"

# ---------------------------------------------------------------- slapd lifecycle
SLAPD_PID=""

# Stop the slapd this script started (by its recorded PID).
stop_slapd() {
    local pid=${SLAPD_PID:-}
    if [[ -z $pid && -f $SLAPD_PIDFILE ]]; then
        pid="$(cat "$SLAPD_PIDFILE")"
    fi
    [[ -n $pid ]] || return 0
    # Ours only: a live slapd whose command line names this script's slapd.conf.
    if pid_alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == slapd ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$SLAPD_DIR/slapd.conf"; then
        log "stopping slapd (PID $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_SECONDS))
        while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
        if pid_alive "$pid"; then
            log "slapd did not stop within ${STOP_SECONDS}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$SLAPD_PIDFILE"
    SLAPD_PID=""
}

on_exit() {
    local rc=$?
    if declare -F bench_cleanup >/dev/null; then bench_cleanup || true; fi
    stop_slapd || true
    if [[ $rc -ne 0 && -f $SLAPD_LOG ]]; then
        show_log_tail "$SLAPD_LOG" 20
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- preflight
# bench_preflight [TOOL…]: the tools (besides slapd's and /usr/bin/time) are present,
# the ports are free, the release binaries are built (BENCH_SKIP_BUILD=1: as they are);
# OUT is wiped.
bench_preflight() {
    local tool port
    for tool in slapd slapadd slappasswd ldapsearch openssl python3 cargo "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (slapd and ldap-utils are needed)"
    done
    if [[ ! -x /usr/bin/time ]]; then
        log "installing the Debian 'time' package (for /usr/bin/time -v)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null; } ||
            die "cannot install the 'time' package"
    fi
    [[ $COUNT =~ ^[0-9]+$ && $COUNT -ge 1000 ]] || die "BENCH_USERS must be a number >= 1000"

    # A slapd left over from an interrupted run of this script (its PID file survives).
    stop_slapd
    for port in "$LDAP_PORT" "$LDAPS_PORT"; do
        port_open "$port" && die "127.0.0.1:$port is already in use; set BENCH_LDAP_PORT/BENCH_LDAPS_PORT"
    done

    if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
        log "cargo build --release --workspace --bins"
        (cd "$ROOT" && cargo build --release --quiet --workspace --bins) || die "cargo build --release failed"
    fi
    [[ -x $TANSYNC ]] || die "$TANSYNC not found; run cargo build --release"

    rm -rf "$OUT"
    mkdir -p "$OUT" "$SLAPD_DIR/data"
}

# ---------------------------------------------------------------- PKI, data, slapd
# bench_start_slapd: test PKI, COUNT generated users slapadded into a fresh slapd on
# LDAP_PORT (StartTLS) / LDAPS_PORT, their entryUUIDs read back into OUT/uuids.ldif.
# Sets PASSWORD (in OUT/bind.password) and exports LDAPTLS_CACERT/LDAPTLS_REQCERT.
bench_start_slapd() {
    local t n deadline
    log "test PKI (tests/harness/pki.sh)"
    bash "$ROOT/tests/harness/pki.sh" "$PKI"
    PASSWORD="$(gen_password)"
    write_secret "$OUT/bind.password" "$PASSWORD"

    log "generating $COUNT users"
    t=$SECONDS
    python3 "$BENCH_DIR/gen_users.py" ldif --count "$COUNT" --out "$OUT/users.ldif"
    log "generated in $((SECONDS - t)) s ($(du -h "$OUT/users.ldif" | cut -f1))"

    SLAPD_CONF="$SLAPD_DIR/slapd.conf"
    slapd_conf "bench/$(basename "$0")" "$SLAPD_DIR" "$PKI" "$SUFFIX" "$BIND_DN" \
        "$(slappasswd -h '{SSHA}' -s "$PASSWORD")" 4294967296 >"$SLAPD_CONF"

    log "slapadd $COUNT users"
    t=$SECONDS
    slapadd -q -f "$SLAPD_CONF" -l "$OUT/users.ldif" >"$OUT/slapadd.log" 2>&1 ||
        { show_log_tail "$OUT/slapadd.log" 20; die "slapadd failed"; }
    log "loaded in $((SECONDS - t)) s"

    log "starting slapd on 127.0.0.1:$LDAP_PORT / :$LDAPS_PORT"
    # -d: foreground (so $! is slapd's PID); stats level logs one line per operation/page.
    setsid slapd -d stats -f "$SLAPD_CONF" \
        -h "ldap://127.0.0.1:$LDAP_PORT/ $LDAPS_URL/" </dev/null >"$SLAPD_LOG" 2>&1 &
    SLAPD_PID=$!
    echo "$SLAPD_PID" >"$SLAPD_PIDFILE"

    deadline=$((SECONDS + WAIT_SECONDS))
    until LDAPTLS_CACERT="$PKI/ca.pem" LDAPTLS_REQCERT=demand \
        ldapsearch -x -o nettimeout=2 -H "$LDAPS_URL" -D "$BIND_DN" -y "$OUT/bind.password" \
        -s base -b "$SUFFIX" '(objectClass=*)' 1.1 >/dev/null 2>&1; do
        pid_alive "$SLAPD_PID" || die "slapd exited during start-up (see $SLAPD_LOG)"
        ((SECONDS < deadline)) || die "slapd did not answer on $LDAPS_URL within ${WAIT_SECONDS}s"
        sleep 0.3
    done
    log "slapd answers on LDAPS (PID $SLAPD_PID)"

    export LDAPTLS_CACERT="$PKI/ca.pem" LDAPTLS_REQCERT=demand

    log "reading the entryUUIDs back"
    ldapsearch -x -LLL -o ldif-wrap=no -o nettimeout=10 -E pr=$PAGE/noprompt -H "$LDAPS_URL" \
        -D "$BIND_DN" -y "$OUT/bind.password" -b "$PEOPLE" "$FILTER" uid entryUUID \
        >"$OUT/uuids.ldif" || die "ldapsearch of the entryUUIDs failed"
    n="$(grep -c '^entryUUID: ' "$OUT/uuids.ldif" || true)"
    [[ $n == "$COUNT" ]] || die "read back $n entryUUIDs, expected $COUNT"
}

# ---------------------------------------------------------------- timing
# run_timed NAME OK_CODES OUTFILE CMD...: run CMD under /usr/bin/time -v with stdout to
# OUTFILE; sets RT_WALL (seconds) and RT_RSS (peak RSS, KB). Any exit code not in
# OK_CODES is fatal.
run_timed() {
    local name=$1 ok=$2 outfile=$3 rc t0 t1
    shift 3
    t0=$(date +%s%N)
    set +e
    /usr/bin/time -v -o "$OUT/time-$name.txt" "$@" >"$outfile" 2>"$OUT/stderr-$name.txt"
    rc=$?
    set -e
    t1=$(date +%s%N)
    if [[ " $ok " != *" $rc "* ]]; then
        cat "$OUT/stderr-$name.txt" >&2
        die "$name exited $rc (expected one of: $ok): $*"
    fi
    RT_RSS="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time-$name.txt")"
    RT_WALL="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')"
}

# ---------------------------------------------------------------- tansync inputs
# bench_write_rules [ODS DESCRIPTION]: OUT/people.toml (everyone under PEOPLE, the
# organisation by ODS, a rule's `ods` value: from o unless given) and OUT/agreements.toml
# (RXA, RXB, RXC: every operation and attribute).
bench_write_rules() {
    local ods_spec=${1:-'{ attribute = "o" }'}
    local what=${2:-"everyone under ou=people; the organisation comes from o"}
    cat >"$OUT/people.toml" <<EOR
description = "Benchmark: $what"

[[rule]]
id = "bench-people"
action = "include"
under = ["$PEOPLE"]
ods = $ods_spec
EOR

    local ods
    {
        cat <<EOR
[partnering]
reference = "PA-BENCH"
valid_from = 2020-01-01
valid_until = 2099-12-31
EOR
        for ods in RXA RXB RXC; do
            cat <<EOR

[[sharing]]
ods_code = "$ods"
reference = "SA-BENCH-$ods"
valid_from = 2020-01-01
valid_until = 2099-12-31
operations = ["provision", "update", "remove", "move", "restore", "join"]
attributes = ["given_name", "family_name", "display_name", "job_title", "department", "site", "telephone", "mobile", "employee_id"]
EOR
        done
    } >"$OUT/agreements.toml"
}

# bench_source_toml [LDIF]: the [source], [mapping] and [filters] tables of tansync.toml
# (paths relative to OUT): this slapd over LDAPS, or with LDIF given, `kind = "ldif"` on
# that export of it (same anchor, mapping and rules).
bench_source_toml() {
    if [[ -n ${1:-} ]]; then
        cat <<EOS
[source]
kind = "ldif"
path = "$1"
anchor = "entryUUID"
EOS
    else
        cat <<EOS
[source]
kind = "ldap"
url = "$LDAPS_URL"
ca_file = "pki/ca.pem"
bind_dn = "$BIND_DN"
bind_password_file = "bind.password"
base_dns = ["$SUFFIX"]
filter = "$FILTER"
page_size = $PAGE
anchor = "entryUUID"
nested_groups = "expand"
EOS
    fi
    cat <<EOS

[mapping]
display_name = "cn"
employee_id = "employeeNumber"

[filters]
files = ["people.toml"]
EOS
}

# bench_reload_slapd: stop this script's slapd and start a fresh one (bench_start_slapd)
# loaded with COUNT users; the previous data, users and entryUUIDs are deleted first.
bench_reload_slapd() {
    stop_slapd
    rm -rf "$SLAPD_DIR" "$OUT/users.ldif" "$OUT/uuids.ldif"
    mkdir -p "$SLAPD_DIR/data"
    bench_start_slapd
}
