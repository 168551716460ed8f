#!/usr/bin/env bash
# End-to-end benchmark: `tansync plan` over LDAPS against a bare `ldapsearch` of the same
# entries from the same server. See BENCHMARKS.md.
#
#   bash bench/ldap-plan.sh
#
# Builds target/release/tansync, generates BENCH_USERS (100000) inetOrgPerson users,
# slapadds them into a fresh back_mdb slapd on 127.0.0.1:4389 (StartTLS) / 4636 (LDAPS)
# with a throw-away test CA, writes tansync's config, filter rules, agreements and an
# NHS Directory snapshot (half the users already have accounts), then runs the
# ldapsearch baseline and tansync alternately BENCH_RUNS (3) times each after one warm-up
# of each, and reports medians, the ratio and tansync's peak RSS. The results are
# printed and written into BENCHMARKS.md (the dated section between the ldap-plan
# markers is replaced). Work dir: bench/out/ (wiped on every run). slapd is stopped on
# exit, also on failure or Ctrl-C.
#
# Variables: BENCH_USERS, BENCH_RUNS, BENCH_LDAP_PORT, BENCH_LDAPS_PORT,
# BENCH_SKIP_BUILD=1 (use the existing release binary), BENCH_NO_MD=1 (don't touch
# BENCHMARKS.md).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# Helpers shared with the test harness: gen_password, write_secret, pid_alive, port_open.
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

COUNT=${BENCH_USERS:-100000}
RUNS=${BENCH_RUNS:-3}
LDAP_PORT=${BENCH_LDAP_PORT:-4389}
LDAPS_PORT=${BENCH_LDAPS_PORT:-4636}
WAIT_SECONDS=60
STOP_SECONDS=20

OUT="$ROOT/bench/out"
PKI="$OUT/pki"
SLAPD_DIR="$OUT/slapd"
SLAPD_LOG="$SLAPD_DIR/slapd.log"
SLAPD_PIDFILE="$OUT/slapd.pid"
TANSYNC="$ROOT/target/release/tansync"
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
for tool in slapd slapadd slappasswd ldapsearch openssl python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (slapd and ldap-utils are needed)"
done
if [[ ! -x /usr/bin/time ]]; then
    log "installing the Debian 'time' package (for /usr/bin/time -v)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null; } ||
        die "cannot install the 'time' package"
fi
[[ $COUNT =~ ^[0-9]+$ && $COUNT -ge 1000 ]] || die "BENCH_USERS must be a number >= 1000"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "BENCH_RUNS must be a number >= 1"

# A slapd left over from an interrupted run of this script (its PID file survives).
stop_slapd
for port in "$LDAP_PORT" "$LDAPS_PORT"; do
    port_open "$port" && die "127.0.0.1:$port is already in use; set BENCH_LDAP_PORT/BENCH_LDAPS_PORT"
done

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[[ -x $TANSYNC ]] || die "$TANSYNC not found; run cargo build --release"

rm -rf "$OUT"
mkdir -p "$OUT" "$SLAPD_DIR/data"

# ---------------------------------------------------------------- PKI, data, slapd
log "test PKI (tests/harness/pki.sh)"
bash "$ROOT/tests/harness/pki.sh" "$PKI"
PASSWORD="$(gen_password)"
write_secret "$OUT/bind.password" "$PASSWORD"

log "generating $COUNT users"
t=$SECONDS
python3 "$BENCH_DIR/gen_users.py" ldif --count "$COUNT" --out "$OUT/users.ldif"
log "generated in $((SECONDS - t)) s ($(du -h "$OUT/users.ldif" | cut -f1))"

SLAPD_CONF="$SLAPD_DIR/slapd.conf"
slapd_conf bench/ldap-plan.sh "$SLAPD_DIR" "$PKI" "$SUFFIX" "$BIND_DN" \
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

# ---------------------------------------------------------------- tansync inputs
log "reading the entryUUIDs back"
ldapsearch -x -LLL -o ldif-wrap=no -o nettimeout=10 -E pr=$PAGE/noprompt -H "$LDAPS_URL" \
    -D "$BIND_DN" -y "$OUT/bind.password" -b "$PEOPLE" "$FILTER" uid entryUUID \
    >"$OUT/uuids.ldif" || die "ldapsearch of the entryUUIDs failed"
n="$(grep -c '^entryUUID: ' "$OUT/uuids.ldif" || true)"
[[ $n == "$COUNT" ]] || die "read back $n entryUUIDs, expected $COUNT"

python3 "$BENCH_DIR/gen_users.py" snapshot --count "$COUNT" --uuids "$OUT/uuids.ldif" \
    --agent-id "$AGENT_ID" --out "$OUT/snapshot.json"
EXPECTED="$(python3 "$BENCH_DIR/gen_users.py" expected --count "$COUNT")"

cat >"$OUT/people.toml" <<EOF
description = "Benchmark: everyone under ou=people; the organisation comes from o"

[[rule]]
id = "bench-people"
action = "include"
under = ["$PEOPLE"]
ods = { attribute = "o" }
EOF

{
    cat <<EOF
[partnering]
reference = "PA-BENCH"
valid_from = 2020-01-01
valid_until = 2099-12-31
EOF
    for ods in RXA RXB RXC; do
        cat <<EOF

[[sharing]]
ods_code = "$ods"
reference = "SA-BENCH-$ods"
valid_from = 2020-01-01
valid_until = 2099-12-31
operations = ["provision", "update", "remove", "move", "restore", "join"]
attributes = ["given_name", "family_name", "display_name", "job_title", "department", "site", "telephone", "mobile", "employee_id"]
EOF
    done
} >"$OUT/agreements.toml"

cat >"$OUT/tansync.toml" <<EOF
# Generated by bench/ldap-plan.sh. Paths are relative to this file.
agent_id = "$AGENT_ID"

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

[mapping]
display_name = "cn"
employee_id = "employeeNumber"

[filters]
files = ["people.toml"]

[target]
kind = "snapshot"
path = "snapshot.json"

[agreements]
file = "agreements.toml"

[safety]
max_removals = 1000000
max_removal_percent = 100.0
default_account_cap = 1000000
EOF

# ---------------------------------------------------------------- the runs
BASE_CMD=(ldapsearch -x -LLL -o nettimeout=30 -E "pr=$PAGE/noprompt" -H "$LDAPS_URL"
    -D "$BIND_DN" -y "$OUT/bind.password" -b "$SUFFIX" "$FILTER")
TANSYNC_CMD=("$TANSYNC" -c "$OUT/tansync.toml" plan --format json --out "$OUT/plan.json")

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

# Warm-up: one of each, untimed for the result. tansync's run also tells us exactly
# which attributes it asks for (slapd logs them), which the baseline then requests too.
log "warm-up: tansync plan"
log_mark=$(wc -l <"$SLAPD_LOG")
run_timed tansync-warmup "2" /dev/null "${TANSYNC_CMD[@]}"
log "warm-up tansync: ${RT_WALL}s, ${RT_RSS} KB"
ATTRS_LINE="$(tail -n +"$((log_mark + 1))" "$SLAPD_LOG" | grep -o 'SRCH attr=.*' | tail -n 1 || true)"
[[ -n $ATTRS_LINE ]] || die "could not find tansync's search attributes in $SLAPD_LOG"
read -r -a ATTRS <<<"${ATTRS_LINE#SRCH attr=}"
log "tansync requests: ${ATTRS[*]}"
BASE_CMD+=("${ATTRS[@]}")

log "warm-up: ldapsearch"
run_timed ldapsearch-warmup "0" "$OUT/baseline.ldif" "${BASE_CMD[@]}"
n="$(grep -c '^dn: uid=' "$OUT/baseline.ldif" || true)"
[[ $n == "$COUNT" ]] || die "baseline ldapsearch returned $n users, expected $COUNT"
log "warm-up ldapsearch: ${RT_WALL}s, ${RT_RSS} KB"

BASE_T=() TAN_T=() TAN_RSS=() BASE_RSS=()
for ((r = 1; r <= RUNS; r++)); do
    run_timed "ldapsearch-$r" "0" "$OUT/baseline.ldif" "${BASE_CMD[@]}"
    BASE_T+=("$RT_WALL") BASE_RSS+=("$RT_RSS")
    log "run $r/$RUNS ldapsearch: ${RT_WALL}s (RSS ${RT_RSS} KB)"
    run_timed "tansync-$r" "2" /dev/null "${TANSYNC_CMD[@]}"
    TAN_T+=("$RT_WALL") TAN_RSS+=("$RT_RSS")
    log "run $r/$RUNS tansync:    ${RT_WALL}s (RSS ${RT_RSS} KB)"
done

# ---------------------------------------------------------------- check, report
export BENCH_COUNT="$COUNT" BENCH_RUNS_N="$RUNS" BENCH_EXPECTED="$EXPECTED" \
    BENCH_BASE_T="${BASE_T[*]}" BENCH_TAN_T="${TAN_T[*]}" BENCH_TAN_RSS="${TAN_RSS[*]}" \
    BENCH_BASE_RSS="${BASE_RSS[*]}" BENCH_ATTRS="${ATTRS[*]}" BENCH_PLAN="$OUT/plan.json" \
    BENCH_MD="$ROOT/BENCHMARKS.md" BENCH_NO_MD="${BENCH_NO_MD:-0}" \
    BENCH_TANSYNC_VERSION="$("$TANSYNC" --version 2>/dev/null || echo tansync)" \
    BENCH_GIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+uncommitted changes in src/')" \
    BENCH_SLAPD="$(slapd -VV 2>&1 | grep -o 'slapd [0-9.]*' | head -n 1 || true)" \
    BENCH_CPU="$(lscpu 2>/dev/null | awk -F': +' '/^Model name/ {print $2; exit}')" \
    BENCH_NPROC="$(nproc)" \
    BENCH_MEM="$(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo)" \
    BENCH_OS="Debian $(cat /etc/debian_version 2>/dev/null || echo '?')" \
    BENCH_RUSTC="$(rustc --version 2>/dev/null || echo rustc)"
python3 "$BENCH_DIR/report.py"
