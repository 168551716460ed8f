#!/usr/bin/env bash
# Push throughput benchmark: `tansync sync` provisioning into the reference directory,
# which adds PUSH_LATENCY_MS (50) to every request, at several configured rates.
#
#   bash bench/push.sh
#
# For each limit in PUSH_LIMITS ("50 100 200 400") it starts a fresh directory (release
# build, SQLite file, no server-side rate limit), generates limit × PUSH_SECONDS (10)
# users into an LDIF export (bench/gen_users.py --entry-uuid), and runs one `tansync
# sync` with rate_per_second = limit, burst = 1 and enough concurrency for the latency
# (limit × latency × 2, at least 8). The achieved rate is taken from the directory's own
# request log: (creates − 1) / (time of the last create − time of the first), so start-up
# and planning are not counted. Target: within 2 % of the limit and never above it;
# at least 200 ops/s where the limit allows. Results are printed and written into
# BENCHMARKS.md between the push markers (BENCH_NO_MD=1 to skip). Work dir: bench/out-push/.
# Every directory started is stopped by its PID on exit.
#
# Variables: PUSH_LIMITS, PUSH_SECONDS, PUSH_LATENCY_MS, PUSH_BURST (1), BENCH_SKIP_BUILD=1, BENCH_NO_MD=1.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
log() { printf '[push %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[push] ERROR: %s\n' "$*" >&2; exit 1; }

LIMITS=${PUSH_LIMITS:-"50 100 200 400"}
SECONDS_EACH=${PUSH_SECONDS:-10}
LATENCY=${PUSH_LATENCY_MS:-50}
OUT="$ROOT/bench/out-push"
TANSYNC="$ROOT/target/release/tansync"
NHS_DIRECTORY="$ROOT/target/release/nhs-directory"
AGENT_ID="tansync-bench"

DIR_PID=""
stop_directory() {
    if [[ -n $DIR_PID ]] && kill -0 "$DIR_PID" 2>/dev/null; then
        kill -TERM "$DIR_PID" 2>/dev/null || true
        wait "$DIR_PID" 2>/dev/null || true
    fi
    DIR_PID=""
}
trap stop_directory EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found"
done
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet --workspace) || die "cargo build --release failed"
fi
[[ -x $TANSYNC ]] || die "$TANSYNC not found; run cargo build --release"

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

for limit in $LIMITS; do
    [[ $limit =~ ^[0-9]+$ && $limit -ge 1 ]] || die "PUSH_LIMITS: $limit is not a rate"
    count=$((limit * SECONDS_EACH))
    conc=$((limit * LATENCY * 2 / 1000))
    ((conc < 8)) && conc=8
    ((conc > 256)) && conc=256
    run="$OUT/limit-$limit"
    mkdir -p "$run"
    python3 "$BENCH_DIR/gen_users.py" ldif --count "$count" --out "$run/users.ldif" --entry-uuid
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run/agent.token"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run/admin.token"
    # tansync refuses a token file that group or others may read.
    chmod 600 "$run/agent.token" "$run/admin.token"
    {
        echo 'listen = "127.0.0.1:0"'
        echo 'database = "directory.sqlite"'
        echo '[admin]'
        echo 'token_file = "admin.token"'
        echo '[faults]'
        echo "latency_ms = $LATENCY"
        echo '[[client]]'
        echo "id = \"$AGENT_ID\""
        echo 'token_file = "agent.token"'
        echo 'organisations = ["RXA", "RXB", "RXC"]'
        for ods in RXA RXB RXC; do
            echo '[[organisation]]'
            echo "ods_code = \"$ods\""
            echo "name = \"Bench Trust $ods\""
            echo 'kind = "trust"'
            echo 'open = true'
            echo 'cap = 1000000'
        done
    } >"$run/directory.toml"
    cat >"$run/filters.toml" <<'EOF'
[[rule]]
id = "people"
action = "include"
ods = { attribute = "o" }
EOF
    {
        printf '[partnering]\nreference = "PA-BENCH"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\n'
        for ods in RXA RXB RXC; do
            printf '\n[[sharing]]\nods_code = "%s"\nreference = "SA-BENCH-%s"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\n' "$ods" "$ods"
            printf 'operations = ["provision", "update", "remove", "move", "restore", "join"]\n'
            printf 'attributes = ["given_name", "family_name", "display_name", "job_title", "department", "site", "telephone", "mobile", "employee_id"]\n'
        done
    } >"$run/agreements.toml"

    "$NHS_DIRECTORY" serve --directory-config "$run/directory.toml" \
        >"$run/directory.out" 2>"$run/directory.err" &
    DIR_PID=$!
    url=""
    for _ in $(seq 1 100); do
        url="$(sed -n 's/^listening on //p' "$run/directory.out")"
        [[ -n $url ]] && break
        kill -0 "$DIR_PID" 2>/dev/null || die "the directory exited: $(cat "$run/directory.err")"
        sleep 0.1
    done
    [[ -n $url ]] || die "the directory did not start"

    cat >"$run/tansync.toml" <<EOF
agent_id = "$AGENT_ID"

[source]
kind = "ldif"
path = "users.ldif"
anchor = "entryUUID"
person_classes = ["inetOrgPerson"]

[filters]
files = ["filters.toml"]

[target]
kind = "scim"
url = "$url"
token_file = "agent.token"

[agreements]
file = "agreements.toml"

[safety]
default_account_cap = 1000000

[push]
rate_per_second = $limit
burst = ${PUSH_BURST:-1}
concurrency = $conc

[state]
dir = "state"
EOF
    log "limit $limit/s: $count creates, concurrency $conc, directory latency ${LATENCY} ms"
    start=$(date +%s.%N)
    "$TANSYNC" --config "$run/tansync.toml" sync >"$run/sync.out" 2>"$run/sync.err" ||
        die "sync failed at limit $limit: $(tail -5 "$run/sync.err") $(tail -5 "$run/sync.out")"
    end=$(date +%s.%N)
    curl_log="$run/requests.json"
    python3 - "$url/_admin/requests" "$run/admin.token" "$curl_log" <<'EOF'
import sys, urllib.request
url, token_file, out = sys.argv[1:]
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + open(token_file).read().strip()})
with urllib.request.urlopen(req, timeout=60) as r, open(out, "wb") as f:
    f.write(r.read())
EOF
    stop_directory
    python3 - "$curl_log" "$limit" "$count" "$conc" "$start" "$end" >>"$RESULTS" <<'EOF'
import json, sys
log, limit, count, conc, start, end = sys.argv[1:]
entries = json.load(open(log))
creates = sorted(e["at_ms"] for e in entries if e["method"] == "POST" and e["path"] == "/Users" and e["status"] == 201)
others = sum(1 for e in entries if e["method"] == "POST" and e["status"] != 201)
if len(creates) != int(count):
    sys.exit(f"expected {count} creates, the directory logged {len(creates)}")
span = (creates[-1] - creates[0]) / 1000
rate = (len(creates) - 1) / span
print(f"{limit}\t{count}\t{conc}\t{rate:.2f}\t{span:.2f}\t{float(end) - float(start):.2f}\t{others}")
EOF
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "[push] limit %s/s: achieved %s/s over %s s (whole sync %s s)\n", $1, $4, $5, $6 }' >&2
done

report="$(python3 - "$RESULTS" "$LATENCY" "${PUSH_BURST:-1}" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
lat, burst = sys.argv[2], sys.argv[3]
out = [f"Directory latency {lat} ms per request; burst {burst}; achieved rate from the directory's request log (first to last create).", "",
       "| limit (ops/s) | creates | concurrency | achieved (ops/s) | vs limit | whole `sync` (s) | target |",
       "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
for limit, count, conc, rate, span, wall, others in rows:
    l, r = float(limit), float(rate)
    dev = (r - l) / l * 100
    ok = r <= l * 1.0005 and r >= l * 0.98
    verdict = "met" if ok else ("**above the limit**" if r > l else "**missed** (more than 2 % below)")
    out.append(f"| {limit} | {count} | {conc} | {r:.2f} | {dev:+.2f} % | {wall} | {verdict} |")
print("\n".join(out))
EOF
)"
printf '\n%s\n' "$report"

if [[ ${BENCH_NO_MD:-0} != 1 ]]; then
    md="$ROOT/BENCHMARKS.md"
    [[ -f $md ]] || printf '# Benchmarks\n' >"$md"
    section="$(printf '<!-- push results: begin (written by bench/push.sh) -->\n### Push throughput %s UTC\n\n`bash bench/push.sh` (PUSH_LIMITS="%s", PUSH_SECONDS=%s), git %s, release build.\n\n%s\n<!-- push results: end -->' \
        "$(date -u '+%Y-%m-%d %H:%M')" "$LIMITS" "$SECONDS_EACH" "$(git -C "$ROOT" rev-parse --short HEAD)" "$report")"
    python3 - "$md" "$section" <<'EOF'
import re, sys
path, section = sys.argv[1:]
text = open(path, encoding="utf-8").read()
pat = re.compile(r"<!-- push results: begin.*?<!-- push results: end -->", re.S)
text = pat.sub(lambda m: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w", encoding="utf-8").write(text)
EOF
    log "written to $md"
fi
