#!/usr/bin/env bash
# The Debian package, end to end, as root on a Debian machine (systemd need not run):
#
#   bash tests/package.sh [LOG]
#
# Builds the package with `cargo deb` into a temporary directory, installs it with
# dpkg, checks its units (`systemd-analyze verify`), the service's sandbox
# (`systemd-analyze security --offline=yes` exposure at most 2.0), that the shipped
# configuration refuses to run until filled in (naming what to fill in), `--version`, the
# tansync user, that the agent runs as that user on a filled-in configuration, and that
# `dpkg --purge` leaves none of the package's files behind. Safe to run twice: a
# tansync package already installed is purged first.
#
# Prints one `test package::NAME ... ok|FAILED` line per check and a closing
# `test result:` line in cargo's format (so tests/harness/run-all.sh counts it in its
# summary), also appended to LOG when given. Exits 1 if any check failed.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG="${1:-/dev/null}"
MAX_EXPOSURE=2.0
cd "$REPO_ROOT" || exit 1

passed=0
failed=0
# check NAME COMMAND...: run one check, report it.
check() {
    local name=$1 out
    shift
    if out="$("$@" 2>&1)"; then
        passed=$((passed + 1))
        echo "test package::$name ... ok" | tee -a "$LOG"
    else
        failed=$((failed + 1))
        echo "test package::$name ... FAILED" | tee -a "$LOG"
        printf '%s\n' "$out" | sed 's/^/    /' | tee -a "$LOG"
    fi
}
finish() {
    local result=ok
    ((failed)) && result=FAILED
    echo "test result: $result. $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out" | tee -a "$LOG"
    ((failed == 0))
    exit $?
}

[[ $(id -u) -eq 0 ]] || { echo "tests/package.sh: run as root (dpkg -i)" >&2; exit 1; }
for tool in cargo-deb dpkg dpkg-deb systemd-analyze systemd-sysusers; do
    command -v "$tool" >/dev/null || {
        echo "tests/package.sh: $tool is missing (bash tests/harness/install-deps.sh installs it)" >&2
        exit 1
    }
done

tmp="$(mktemp -d /tmp/tansync-package.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

# An earlier, interrupted run's package.
if dpkg-query -W -f='${db:Status-Status}' tansync 2>/dev/null | grep -q installed; then
    dpkg --purge tansync >/dev/null
fi

build() {
    cargo deb -p tansync --output "$tmp/" >"$tmp/cargo-deb.log" 2>&1 || { cat "$tmp/cargo-deb.log"; return 1; }
    compgen -G "$tmp/tansync_*.deb" >/dev/null
}
# (Each check runs in a subshell: what it finds is read again here.)
check builds_with_cargo_deb build
deb="$(compgen -G "$tmp/tansync_*.deb" | head -n1)"
[[ -n $deb ]] || finish
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' | grep -v '/$' | sort >"$tmp/files"

contents() {
    # The agent and its files, and no reference directory.
    local want
    for want in /usr/bin/tansync /etc/tansync/tansync.toml /etc/tansync/agreements.example.toml \
        /etc/tansync/filters/single-trust.toml /usr/lib/systemd/system/tansync.service \
        /usr/lib/systemd/system/tansync-plan.service /usr/lib/systemd/system/tansync-plan.timer \
        /usr/lib/systemd/system/tansync-sync.service /usr/lib/systemd/system/tansync-sync.timer \
        /usr/lib/sysusers.d/tansync.conf /usr/share/man/man1/tansync.1.gz /usr/share/man/man1/tansync-run.1.gz; do
        grep -qx "$want" "$tmp/files" || { echo "$want is not in the package"; return 1; }
    done
    if grep -q nhs-directory "$tmp/files"; then
        echo "the reference directory is in the package"; return 1
    fi
    # Configuration files are conffiles (an upgrade keeps the operator's edits).
    dpkg-deb -e "$deb" "$tmp/control"
    for want in /etc/tansync/tansync.toml /etc/tansync/agreements.example.toml /etc/tansync/filters/single-trust.toml; do
        grep -qx "$want" "$tmp/control/conffiles" || { echo "$want is not a conffile"; return 1; }
    done
}
check holds_the_agent_units_and_conffiles contents

install() {
    dpkg -i "$deb" && getent passwd tansync && [[ -x /usr/bin/tansync ]]
}
check installs_and_creates_the_tansync_user install

verify_units() {
    # No running systemd here: the offline checks. `--man=no`: the Documentation=
    # line names a man page, which may be filtered out of minimal installs.
    systemd-analyze verify --man=no /usr/lib/systemd/system/tansync.service \
        /usr/lib/systemd/system/tansync-plan.service /usr/lib/systemd/system/tansync-plan.timer \
        /usr/lib/systemd/system/tansync-sync.service /usr/lib/systemd/system/tansync-sync.timer
}
check units_verify verify_units

exposure() {
    local out level
    out="$(systemd-analyze security --offline=yes /usr/lib/systemd/system/tansync.service 2>&1)" || true
    level="$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for tansync.service: \([0-9.]*\).*/\1/p')"
    [[ -n $level ]] || { printf '%s\n' "$out"; echo "no exposure figure"; return 1; }
    echo "exposure $level"
    awk -v l="$level" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(l <= max) }' ||
        { printf '%s\n' "$out"; echo "exposure $level is above $MAX_EXPOSURE"; return 1; }
}
check service_exposure_at_most_2 exposure

as_tansync() {
    setpriv --reuid tansync --regid tansync --clear-groups -- "$@"
}

unfilled() {
    local out rc=0
    out="$(as_tansync /usr/bin/tansync --config /etc/tansync/tansync.toml check 2>&1)" || rc=$?
    printf '%s\n' "$out"
    [[ $rc -eq 1 ]] || { echo "exit $rc, not 1"; return 1; }
    local want
    for want in "this configuration is not filled in yet" \
        "source.url: the domain controller's ldaps:// URL" "agent_id: a name for this agent" \
        "target.url: the NHS Directory's SCIM base URL" "agreements.file: your agreements file" \
        "filters.files: your rule file" "source.base_dns:" "source.bind_dn:"; do
        grep -qF "$want" <<<"$out" || { echo "missing: $want"; return 1; }
    done
    # Every command, not only check.
    rc=0
    as_tansync /usr/bin/tansync --config /etc/tansync/tansync.toml run --once >/dev/null 2>&1 || rc=$?
    [[ $rc -eq 1 ]] || { echo "run --once exit $rc, not 1"; return 1; }
}
check shipped_config_refuses_until_filled_in unfilled

version() {
    local want got
    want="tansync $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
    got="$(/usr/bin/tansync --version)"
    [[ $got == "$want" ]] || { echo "--version: $got, not $want"; return 1; }
}
check version version

runs_as_tansync() {
    # The quickstart (LDIF export and snapshot), filled in, in a directory the tansync
    # user owns: the installed binary runs a standby cycle as that user.
    local d="$tmp/run"
    mkdir -p "$d" && cp -r examples/quickstart "$d/" && cp -r filters "$d/"
    cat >"$d/quickstart/run.toml" <<EOF
agent_id = "tansync-northgate"
[source]
kind = "ldif"
path = "northgate-export.ldif"
[filters]
files = ["../filters/single-trust.toml"]
[target]
kind = "snapshot"
path = "nhs-directory-snapshot.json"
[agreements]
file = "agreements.toml"
[state]
dir = "state"
EOF
    chown -R tansync:tansync "$d"
    as_tansync env -u NOTIFY_SOCKET /usr/bin/tansync --config "$d/quickstart/run.toml" run --once --standby
}
check runs_as_the_tansync_user runs_as_tansync

purge() {
    dpkg --purge tansync || return 1
    local f left=0
    while read -r f; do
        if [[ -e $f ]]; then echo "left behind: $f"; left=1; fi
    done <"$tmp/files"
    for f in /etc/tansync /var/lib/tansync; do
        if [[ -e $f ]]; then echo "left behind: $f"; left=1; fi
    done
    ((left == 0))
}
check purge_leaves_nothing_behind purge

finish
