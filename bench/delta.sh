#!/usr/bin/env bash
# Continuous-mode benchmark: a delta cycle end to end, and a long-running `tansync run`'s
# memory. See BENCHMARKS.md.
#
#   bash bench/delta.sh
#
# Builds the release binaries, slapadds BENCH_USERS (100000) generated users into a fresh
# slapd (LDAPS, test CA; bench/ldap-common.sh, shared with bench/ldap-plan.sh) and starts
# the reference directory (`nhs-directory serve`, SQLite) seeded with a matching account
# for every user (bench/gen_users.py snapshot --all: managed by this agent, anchored by
# entryUUID, the same values), caps of 1,000,000 per organisation and no rate limit.
# Then, with `[target] kind = "scim"`:
#
# 1. `tansync run --once`: the first cycle is full (no watermark) and a no-op; timed.
# 2. DELTA_RUNS (5) times: ldapmodify DELTA_CHANGES (10) users' titles, then `tansync
#    run --once`, timed; `tansync status --format json` must show a delta cycle, result
#    ok, with DELTA_CHANGES operations and none failed. Reported: the median, and the
#    median over the full cycle's time. Targets: ≤ 0.5 s and ≤ 5 %.
# 3. `tansync run` with `[daemon] interval_seconds = 1` for RSS_CYCLES (50) cycles,
#    RSS_CHANGES (3) users modified after each "cycle finished" log line; VmRSS and
#    VmHWM are sampled from /proc after each such line; then SIGTERM (exit 0 expected).
#    Reported: RSS after cycles 1, 10, 25, 50 (target: flat).
#
# Results are printed and written into BENCHMARKS.md between the delta markers
# (BENCH_NO_MD=1: not). Work dir: bench/out-delta/ (wiped on every run). slapd, the
# directory and `tansync run` are stopped by their PIDs on exit, also on failure.
#
# DELTA_SOURCE=samba: the same against a Samba AD DC instead of slapd (the test harness's,
# tests/harness/start-servers.sh, so its packages must be installed first: bash
# tests/harness/install-deps.sh). BENCH_USERS (10000) users are added over LDAPS under
# their own OU; the directory starts empty, so run 1 provisions them all (timed,
# reported apart); then the directory cache is removed and `run --once` is timed again:
# that full cycle (a no-op) is the one the delta is compared with. Part 3 runs only if
# RSS_CYCLES is set. Work dir bench/out-delta-samba/; its own BENCHMARKS.md markers.
#
# DELTA_PERF=1: one more delta cycle under `perf record --call-graph dwarf` (build with
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for symbols); the report of where its CPU
# time went is written to bench/out-delta/delta-perf.txt.
#
# Variables: BENCH_USERS, DELTA_RUNS, DELTA_CHANGES, RSS_CYCLES, RSS_CHANGES,
# BENCH_LDAP_PORT (4389), BENCH_LDAPS_PORT (4636), BENCH_SKIP_BUILD=1, BENCH_NO_MD=1.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SOURCE=${DELTA_SOURCE:-openldap}
case $SOURCE in
openldap) COUNT=${BENCH_USERS:-100000} RSS_CYCLES=${RSS_CYCLES:-50} OUT_NAME=out-delta ;;
samba) COUNT=${BENCH_USERS:-10000} RSS_CYCLES=${RSS_CYCLES:-0} OUT_NAME=out-delta-samba ;;
*) echo "DELTA_SOURCE must be openldap or samba, not $SOURCE" >&2; exit 2 ;;
esac
DELTA_RUNS=${DELTA_RUNS:-5}
DELTA_CHANGES=${DELTA_CHANGES:-10}
RSS_CHANGES=${RSS_CHANGES:-3}
LDAP_PORT=${BENCH_LDAP_PORT:-4389}
LDAPS_PORT=${BENCH_LDAPS_PORT:-4636}
OUT="$ROOT/bench/$OUT_NAME"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
TANSYNC="$BIN/tansync"
NHS_DIRECTORY="$BIN/nhs-directory"
CYCLE_WAIT_SECONDS=120

DIR_PID="" RUN_PID=""
# stop_pid NAME PID: SIGTERM, wait (bounded), then SIGKILL.
stop_pid() {
    local name=$1 pid=$2 deadline
    pid_alive "$pid" || return 0
    log "stopping $name (PID $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_SECONDS))
    while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if pid_alive "$pid"; then
        log "$name did not stop within ${STOP_SECONDS}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
SAMBA_WORK=""
bench_cleanup() {
    [[ -n $RUN_PID ]] && stop_pid "tansync run" "$RUN_PID"
    [[ -n $DIR_PID ]] && stop_pid "nhs-directory" "$DIR_PID"
    [[ -n $SAMBA_WORK ]] && bash "$ROOT/tests/harness/stop-servers.sh" "$SAMBA_WORK"
    RUN_PID="" DIR_PID="" SAMBA_WORK=""
}
# shellcheck source=bench/ldap-common.sh
. "$BENCH_DIR/ldap-common.sh"

for n in "$DELTA_RUNS" "$DELTA_CHANGES" "$RSS_CHANGES"; do
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "DELTA_RUNS, DELTA_CHANGES, RSS_CHANGES must be numbers >= 1"
done
[[ $RSS_CYCLES =~ ^[0-9]+$ ]] || die "RSS_CYCLES must be a number"
bench_preflight ldapmodify
[[ -x $NHS_DIRECTORY ]] || die "$NHS_DIRECTORY not found; run cargo build --release --workspace --bins"
if [[ $SOURCE == samba ]]; then
    # ------------------------------------------------------------ Samba AD DC
    SAMBA_WORK="$OUT/servers"
    log "starting the test harness's Samba AD DC (and slapd) in $SAMBA_WORK"
    bash "$ROOT/tests/harness/start-servers.sh" "$SAMBA_WORK" >"$OUT/servers.log" 2>&1 ||
        { show_log_tail "$OUT/servers.log" 30; die "tests/harness/start-servers.sh failed"; }
    # shellcheck source=/dev/null
    . "$SAMBA_WORK/env.sh"
    export LDAPTLS_CACERT="$TANSYNC_TEST_CA" LDAPTLS_REQCERT=demand
    LDAPS_URL="$TANSYNC_TEST_SAMBA_LDAPS_URL" BIND_DN="$TANSYNC_TEST_SAMBA_BIND_DN"
    cp "$TANSYNC_TEST_SAMBA_PASSWORD_FILE" "$OUT/bind.password"
    PEOPLE="OU=Bench,$TANSYNC_TEST_SAMBA_BASE"
    log "adding $COUNT users under $PEOPLE over LDAPS"
    t=$SECONDS
    {
        printf 'dn: %s\nobjectClass: organizationalUnit\n\n' "$PEOPLE"
        for ((i = 1; i <= COUNT; i++)); do
            # 544: enabled, no password required (as the test fixture writes people).
            printf 'dn: CN=Bench User %05d,%s\nobjectClass: user\nsAMAccountName: bench%05d\ngivenName: Bench\nsn: User %05d\ndisplayName: Bench User %05d\ntitle: Bench Title\nemployeeID: B%05d\nuserAccountControl: 544\n\n' \
                "$i" "$PEOPLE" "$i" "$i" "$i" "$i"
        done
    } >"$OUT/users.ldif"
    ldapmodify -a -x -o nettimeout=30 -H "$LDAPS_URL" -D "$BIND_DN" -y "$OUT/bind.password" \
        -f "$OUT/users.ldif" >"$OUT/ldapadd.log" 2>&1 || { show_log_tail "$OUT/ldapadd.log" 20; die "ldapadd into Samba failed"; }
    log "added in $((SECONDS - t)) s"
    bench_write_rules '{ constant = "RXA" }' "everyone under $PEOPLE, in RXA"
else
    bench_write_rules
    bench_start_slapd
fi

# ---------------------------------------------------------------- the directory
if [[ $SOURCE == openldap ]]; then
    log "snapshot: an unchanged account for each of the $COUNT users"
    python3 "$BENCH_DIR/gen_users.py" snapshot --all --count "$COUNT" --uuids "$OUT/uuids.ldif" \
        --agent-id "$AGENT_ID" --out "$OUT/snapshot.json"
fi
write_secret "$OUT/agent.token" "$(openssl rand -hex 32)"
{
    echo '# Generated by bench/delta.sh. Paths are relative to this file.'
    echo 'listen = "127.0.0.1:0"'
    echo 'database = "directory.sqlite"'
    if [[ $SOURCE == openldap ]]; then echo 'seed = "snapshot.json"'; fi
    echo '# No [rate_limit] table: the directory limits no one (the agent paces itself).'
    echo '[[client]]'
    echo "id = \"$AGENT_ID\""
    echo 'token_file = "agent.token"'
    echo 'organisations = ["RXA", "RXB", "RXC"]'
    for ods in RXA RXB RXC; do
        printf '[[organisation]]\nods_code = "%s"\nname = "Bench Trust %s"\nkind = "trust"\nopen = true\ncap = 1000000\n' "$ods" "$ods"
    done
    printf '[lifecycle]\npending_seconds = 0\n'
} >"$OUT/directory.toml"

log "starting nhs-directory (seeding $COUNT accounts)"
t=$SECONDS
"$NHS_DIRECTORY" serve --directory-config "$OUT/directory.toml" \
    >"$OUT/directory.out" 2>"$OUT/directory.err" </dev/null &
DIR_PID=$!
URL=""
deadline=$((SECONDS + WAIT_SECONDS * 5))
until [[ -n $URL ]]; do
    pid_alive "$DIR_PID" || { show_log_tail "$OUT/directory.err" 20; die "nhs-directory exited during start-up"; }
    ((SECONDS < deadline)) || die "nhs-directory did not start within $((WAIT_SECONDS * 5))s"
    sleep 0.3
    URL="$(sed -n 's/^listening on //p' "$OUT/directory.out")"
done
log "nhs-directory at $URL (PID $DIR_PID), seeded in $((SECONDS - t)) s"

# ---------------------------------------------------------------- tansync config
{
    echo '# Generated by bench/delta.sh. Paths are relative to this file.'
    echo "agent_id = \"$AGENT_ID\""
    echo
    if [[ $SOURCE == samba ]]; then
        cat <<EOS
[source]
kind = "ldap"
url = "$LDAPS_URL"
ca_file = "$TANSYNC_TEST_CA"
bind_dn = "$BIND_DN"
bind_password_file = "bind.password"
base_dns = ["$PEOPLE"]
page_size = 1000

[filters]
files = ["people.toml"]
EOS
    else
        bench_source_toml
    fi
    cat <<EOF

[target]
kind = "scim"
url = "$URL"
token_file = "agent.token"

[agreements]
file = "agreements.toml"

[safety]
default_account_cap = 1000000

[push]
rate_per_second = 1000
concurrency = 8

[state]
dir = "state"
EOF
} >"$OUT/tansync.toml"
# `run` needs a schedule; `run --once` none. The same state directory.
{
    cat "$OUT/tansync.toml"
    printf '\n[daemon]\ninterval_seconds = 1\n'
} >"$OUT/tansync-run.toml"

# ---------------------------------------------------------------- helpers
NEXT_USER=1
# modify N: a new title for the next N users (u0000001, u0000002, … or Bench User
# 00001, …), one ldapmodify.
modify() {
    local n=$1 i dn
    for ((i = 0; i < n; i++)); do
        if [[ $SOURCE == samba ]]; then
            dn="$(printf 'CN=Bench User %05d,%s' "$NEXT_USER" "$PEOPLE")"
        else
            dn="$(printf 'uid=u%07d,%s' "$NEXT_USER" "$PEOPLE")"
        fi
        printf 'dn: %s\nchangetype: modify\nreplace: title\ntitle: Bench Title %d\n\n' "$dn" "$NEXT_USER"
        NEXT_USER=$((NEXT_USER + 1))
    done >"$OUT/modify.ldif"
    ldapmodify -x -o nettimeout=10 -H "$LDAPS_URL" -D "$BIND_DN" -y "$OUT/bind.password" \
        -f "$OUT/modify.ldif" >>"$OUT/ldapmodify.log" 2>&1 || die "ldapmodify failed (see $OUT/ldapmodify.log)"
}

# check_last KIND OPERATIONS: the newest cycle in `tansync status` is KIND, ok, with
# OPERATIONS operations and none failed.
check_last() {
    "$TANSYNC" -c "$OUT/tansync.toml" status --format json >"$OUT/status.json" ||
        die "tansync status failed"
    python3 - "$OUT/status.json" "$1" "$2" <<'EOF' || die "unexpected cycle (see $OUT/status.json)"
import json, sys
path, kind, ops = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = json.load(open(path))["cycles"][0]
got = (c["kind"], c["result"], c["operations"], c["failed"])
if got != (kind, "ok", ops, 0):
    sys.exit(f"newest cycle {c['id']}: kind/result/operations/failed {got}, expected {(kind, 'ok', ops, 0)}; note {c.get('note')}")
EOF
}

ONCE=("$TANSYNC" -c "$OUT/tansync.toml" run --once)

# ---------------------------------------------------------------- 1: the full cycle
FIRST_T=""
if [[ $SOURCE == samba ]]; then
    log "run 1: tansync run --once (full, provisions $COUNT)"
    run_timed first "0" "$OUT/first.out" "${ONCE[@]}"
    FIRST_T=$RT_WALL
    check_last full "$COUNT"
    log "first cycle: ${FIRST_T}s, peak RSS ${RT_RSS} KB, $COUNT provisions"
    # Without its cache the next cycle is full: the no-op full cycle to compare with.
    rm -f "$OUT/state/directory-cache.db"
fi
log "tansync run --once (full)"
run_timed full "0" "$OUT/full.out" "${ONCE[@]}"
FULL_T=$RT_WALL FULL_RSS=$RT_RSS
check_last full 0
log "full cycle: ${FULL_T}s, peak RSS ${FULL_RSS} KB, 0 operations"

# ---------------------------------------------------------------- 2: delta cycles
DELTA_T=() DELTA_RSS=()
for ((r = 1; r <= DELTA_RUNS; r++)); do
    modify "$DELTA_CHANGES"
    run_timed "delta-$r" "0" "$OUT/delta-$r.out" "${ONCE[@]}"
    check_last delta "$DELTA_CHANGES"
    DELTA_T+=("$RT_WALL") DELTA_RSS+=("$RT_RSS")
    log "delta $r/$DELTA_RUNS: ${RT_WALL}s, peak RSS ${RT_RSS} KB, $DELTA_CHANGES updates"
done

# One more, untimed, with debug logs (timestamps: where a delta's time goes).
modify "$DELTA_CHANGES"
TANSYNC_LOG=tansync=debug "${ONCE[@]}" >"$OUT/delta-debug.out" 2>"$OUT/delta-debug.err" ||
    die "the debug delta run failed (see $OUT/delta-debug.err)"
check_last delta "$DELTA_CHANGES"

if [[ ${DELTA_PERF:-0} == 1 ]]; then
    command -v perf >/dev/null || die "DELTA_PERF=1 needs perf"
    modify "$DELTA_CHANGES"
    log "a delta cycle under perf record"
    perf record -q --call-graph dwarf,16384 -F 2000 -o "$OUT/delta.perf" -- "${ONCE[@]}" \
        >"$OUT/delta-perf.out" 2>"$OUT/delta-perf.err" || die "the perf delta run failed (see $OUT/delta-perf.err)"
    check_last delta "$DELTA_CHANGES"
    perf report -q -i "$OUT/delta.perf" --no-children --percent-limit 1 --stdio -g none \
        >"$OUT/delta-perf.txt" 2>/dev/null || die "perf report failed"
    perf report -q -i "$OUT/delta.perf" --children --percent-limit 3 --stdio -g none \
        >"$OUT/delta-perf-children.txt" 2>/dev/null || die "perf report failed"
    log "perf report: $OUT/delta-perf.txt, $OUT/delta-perf-children.txt"
fi

# ---------------------------------------------------------------- 3: tansync run
RUN_LOG="$OUT/run.err"
: >"$OUT/rss.tsv"
: >"$RUN_LOG"
if ((RSS_CYCLES > 0)); then
    log "tansync run, interval 1 s, $RSS_CYCLES cycles, $RSS_CHANGES changes after each"
    "$TANSYNC" -c "$OUT/tansync-run.toml" run >"$OUT/run.out" 2>"$RUN_LOG" </dev/null &
    RUN_PID=$!
    for ((c = 1; c <= RSS_CYCLES; c++)); do
        deadline=$((SECONDS + CYCLE_WAIT_SECONDS))
        until (($(grep -c 'cycle finished' "$RUN_LOG" || true) >= c)); do
            pid_alive "$RUN_PID" || { show_log_tail "$RUN_LOG" 20; die "tansync run exited before cycle $c"; }
            ((SECONDS < deadline)) || die "cycle $c did not finish within ${CYCLE_WAIT_SECONDS}s"
            sleep 0.05
        done
        printf '%s\t%s\t%s\n' "$c" \
            "$(awk '/^VmRSS:/ {print $2}' "/proc/$RUN_PID/status")" \
            "$(awk '/^VmHWM:/ {print $2}' "/proc/$RUN_PID/status")" >>"$OUT/rss.tsv"
        if ((c < RSS_CYCLES)); then modify "$RSS_CHANGES"; fi
    done
    kill -TERM "$RUN_PID"
    deadline=$((SECONDS + STOP_SECONDS))
    while pid_alive "$RUN_PID" && ((SECONDS < deadline)); do sleep 0.1; done
    set +e
    wait "$RUN_PID"
    RUN_RC=$?
    set -e
    RUN_PID=""
    [[ $RUN_RC == 0 ]] || { show_log_tail "$RUN_LOG" 20; die "tansync run exited $RUN_RC after SIGTERM"; }
    "$TANSYNC" -c "$OUT/tansync.toml" status --format json >"$OUT/status-run.json"
fi

# ---------------------------------------------------------------- report
report="$(python3 - "$OUT" "$FULL_T" "$FULL_RSS" "${DELTA_T[*]}" "${DELTA_RSS[*]}" \
    "$COUNT" "$DELTA_CHANGES" "$RSS_CHANGES" "$RSS_CYCLES" "$SOURCE" "$FIRST_T" <<'EOF'
import json, statistics, sys
out, full_t, full_rss, delta_t, delta_rss, count, changes, rss_changes, cycles, source, first_t = sys.argv[1:]
full_t, full_rss = float(full_t), int(full_rss)
delta_t = [float(x) for x in delta_t.split()]
delta_rss = [int(x) for x in delta_rss.split()]
med = statistics.median(delta_t)
share = med / full_t * 100
rows = [l.split("\t") for l in open(f"{out}/rss.tsv").read().splitlines() if l]
rss = {int(c): (int(r), int(h)) for c, r, h in rows}
import re
fin = [dict(re.findall(r'(\w+)="?([^" ]*)"?', l.split("cycle finished", 1)[1]))
       for l in open(f"{out}/run.err", encoding="utf-8") if "cycle finished" in l][: int(cycles)]
kinds = sorted({(c["kind"], c["result"]) for c in fin})
ops = sum(int(c["operations"]) for c in fin)
failed = sum(1 for c in fin if c["result"] != "ok")
def mb(kb): return f"{kb / 1024:.1f} MB"
def verdict(ok, miss): return "met" if ok else f"**missed** ({miss})"
if source == "samba":
    head = f"{int(count):,} users in a Samba AD DC (LDAPS), provisioned by the first cycle into an empty reference directory; the full cycle timed is the next one (its directory cache removed: 0 operations)"
else:
    head = f"{int(count):,} users in OpenLDAP (LDAPS), the reference directory seeded with a matching account for each (full cycle: 0 operations)"
L = [head + "; `[target] kind = \"scim\"`, `[push] rate_per_second = 1000`, no directory rate limit.", "",
     "| measure | value | target | |", "| --- | ---: | --- | --- |"]
if first_t:
    L.append(f"| first cycle (`run --once`, no watermark, {int(count):,} provisions) | {float(first_t):.3f} s | | |")
L += [f"| full cycle (`run --once`, {'no directory cache' if source == 'samba' else 'no watermark'}) | {full_t:.3f} s | | peak RSS {mb(full_rss)} |",
     f"| delta cycle, {changes} changed users, median of {len(delta_t)} | {med:.3f} s | ≤ 0.5 s | {verdict(med <= 0.5, f'by {med - 0.5:.3f} s')}; runs {', '.join(f'{t:.3f}' for t in delta_t)} s; peak RSS {mb(max(delta_rss))} |",
     f"| delta / full | {share:.1f} % | ≤ 5 % | {verdict(share <= 5, f'by {share - 5:.1f} points')} |"]
if rss:
    L += ["", f"`tansync run`, `interval_seconds = 1`, {cycles} cycles, {rss_changes} users modified after each; VmRSS (VmHWM) after the cycle's `cycle finished` line:", "",
          "| after cycle | VmRSS | VmHWM |", "| ---: | ---: | ---: |"]
    for c in sorted({1, 10, 25, 50, 100, 200, 500, 1000, max(rss)} & set(rss)):
        if c in rss:
            L.append(f"| {c} | {mb(rss[c][0])} | {mb(rss[c][1])} |")
    first, last = rss[min(rss)][0], rss[max(rss)][0]
    L += ["", f"Cycles of the run: {', '.join(f'{k}/{r}' for k, r in kinds)}; {ops} operations; {failed} cycles not ok. VmRSS from cycle 10 to {max(rss)}: {mb(rss.get(10, rss[min(rss)])[0])} → {mb(last)} ({(last - rss.get(10, rss[min(rss)])[0]) / 1024:+.1f} MB)."]
print("\n".join(L))
EOF
)"
printf '\n%s\n' "$report"

if [[ ${BENCH_NO_MD:-0} != 1 ]]; then
    md="$ROOT/BENCHMARKS.md"
    if [[ $SOURCE == samba ]]; then
        marker="delta-samba results" title="Delta cycles against Samba AD"
        server="Samba $(samba -V 2>/dev/null | head -n 1 | sed "s/^Version //" || true)"
    else
        marker="delta results" title="Delta cycles and a long-running \`tansync run\`"
        server="$(slapd -VV 2>&1 | grep -o 'slapd [0-9.]*' | head -n 1 || true)"
    fi
    section="$(printf '<!-- %s: begin (written by bench/delta.sh) -->\n### %s %s UTC\n\n`%sbash bench/delta.sh` (BENCH_USERS=%s DELTA_RUNS=%s DELTA_CHANGES=%s RSS_CYCLES=%s RSS_CHANGES=%s), git %s, release build; %s, %s cores, %s; %s.\n\n%s\n<!-- %s: end -->' \
        "$marker" "$title" "$(date -u '+%Y-%m-%d %H:%M')" \
        "$([[ $SOURCE == samba ]] && echo 'DELTA_SOURCE=samba ')" \
        "$COUNT" "$DELTA_RUNS" "$DELTA_CHANGES" "$RSS_CYCLES" "$RSS_CHANGES" \
        "$(git -C "$ROOT" rev-parse --short HEAD)" \
        "$(lscpu 2>/dev/null | awk -F': +' '/^Model name/ {print $2; exit}')" "$(nproc)" \
        "$(awk '/MemTotal/ {printf "%.0f GB RAM", $2 / 1048576}' /proc/meminfo)" \
        "$server" "$report" "$marker")"
    python3 - "$md" "$section" "$marker" <<'EOF'
import re, sys
path, section, marker = sys.argv[1:]
text = open(path, encoding="utf-8").read()
pat = re.compile(r"<!-- " + re.escape(marker) + r": begin.*?<!-- " + re.escape(marker) + r": end -->", re.S)
text = pat.sub(lambda m: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w", encoding="utf-8").write(text)
EOF
    log "written to $md"
fi
