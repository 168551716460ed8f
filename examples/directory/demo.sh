#!/usr/bin/env bash
# plan → apply → plan → export against the reference NHS Directory, with the quickstart's AD
# export. No servers to install: the directory is this workspace's other binary,
# nhs-directory.
#
#   bash examples/directory/demo.sh
#
# Works in a fresh temp folder (printed; kept afterwards so you can look at the journal,
# the plan and the directory's database), and stops the directory it started.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d -t tansync-demo.XXXXXX)"
echo "work folder: $work" >&2

cargo build --release --quiet --workspace --manifest-path "$root/Cargo.toml"
bin="$root/target/release/tansync"
directory="$root/target/release/nhs-directory"

cp "$here/directory.toml" "$work/directory.toml"
# A fresh random token; the directory keeps only its digest.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/agent.token"
chmod 600 "$work/agent.token"

"$directory" serve --directory-config "$work/directory.toml" >"$work/directory.out" 2>"$work/directory.log" &
dir_pid=$!
trap 'kill "$dir_pid" 2>/dev/null; wait "$dir_pid" 2>/dev/null || true' EXIT
url=""
for _ in $(seq 1 100); do
    url="$(sed -n 's/^listening on //p' "$work/directory.out")"
    [[ -n $url ]] && break
    kill -0 "$dir_pid" 2>/dev/null || { cat "$work/directory.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $url ]] || { echo "the directory did not start" >&2; exit 1; }
echo "reference directory: $url (PID $dir_pid)" >&2

q="$root/examples/quickstart"
cat >"$work/tansync.toml" <<TOML
agent_id = "tansync-northgate"

[source]
kind = "ldif"
path = "$q/northgate-export.ldif"

[filters]
files = ["$root/filters/single-trust.toml"]

[target]
kind = "scim"
url = "$url"
token_file = "agent.token"

[agreements]
file = "$q/agreements.toml"

[push]
rate_per_second = 20

[state]
dir = "state"
TOML

step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; }
step "tansync plan --out plan.json"
"$bin" --config "$work/tansync.toml" plan --out "$work/plan.json" || [[ $? -eq 2 ]]
step "tansync apply --plan plan.json"
"$bin" --config "$work/tansync.toml" apply --plan "$work/plan.json"
step "tansync plan   (the directory now matches: exit 0)"
"$bin" --config "$work/tansync.toml" plan
step "nhs-directory export   (the directory's state as a target snapshot)"
"$directory" export --directory-config "$work/directory.toml" >"$work/export.json"
echo "wrote $work/export.json: plan against it with [target] kind = \"snapshot\", or start a directory from it with seed = \"export.json\"" >&2
