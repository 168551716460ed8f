#!/usr/bin/env bash
# The project's test command:
#
#   bash tests/harness/run-all.sh
#
# Installs the Debian packages the test servers need (if missing), starts a
# Samba AD DC and an OpenLDAP slapd in a fresh work dir, runs the tests
# against them and stops the servers again, also on failure or Ctrl-C.
# Exits with the test command's exit code.
#
# Environment:
#   TANSYNC_TEST_CMD          test command (default: cargo test --workspace
#                             --features tansync/kerberos; tests/kerberos.rs
#                             needs the feature, so give it in your own command too)
#   TANSYNC_HARNESS_WORKDIR   work dir (default: target/test-servers; it is
#                             wiped and recreated on every run)
#   TANSYNC_HARNESS_SKIP_CHECKS=1  skip check-servers.sh before the tests
#
# The default run also runs tests/package.sh (the Debian package: build, install,
# check, purge) after cargo's tests; its checks count in the summary line.
set -euo pipefail

# shellcheck source=tests/harness/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$REPO_ROOT"
WORKDIR="${TANSYNC_HARNESS_WORKDIR:-$REPO_ROOT/target/test-servers}"
WORKDIR="$(abs_dir "$WORKDIR")"
case $WORKDIR in
    / | "$REPO_ROOT" | "${HOME:-/}" | /tmp | /var | /usr | /etc | /root)
        die "refusing to use $WORKDIR as the (wiped) work dir" ;;
esac

bash "$HARNESS_DIR/install-deps.sh"

# Servers left over from an interrupted earlier run in the same dir.
bash "$HARNESS_DIR/stop-servers.sh" "$WORKDIR"
rm -rf "$WORKDIR"
mkdir -p "$WORKDIR"

summary_line=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    bash "$HARNESS_DIR/stop-servers.sh" "$WORKDIR" || true
    # The closing line CI reads: the whole run's count, after everything else.
    if [[ -n $summary_line ]]; then
        echo "$summary_line"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$HARNESS_DIR/start-servers.sh" "$WORKDIR"
# shellcheck source=/dev/null
. "$WORKDIR/env.sh"

if [[ ${TANSYNC_HARNESS_SKIP_CHECKS:-0} != 1 ]]; then
    bash "$HARNESS_DIR/check-servers.sh" "$WORKDIR"
fi

# The tests start both of the workspace's binaries (tansync and nhs-directory); cargo
# builds only the tested package's own binary for its tests, so build them all first.
# With the features the tests are built with, so that cargo does not build the
# tansync binary twice.
log "running: cargo build --workspace --bins --features tansync/kerberos"
cargo build --workspace --bins --features tansync/kerberos

test_rc=0
if [[ -n ${TANSYNC_TEST_CMD:-} ]]; then
    log "running: $TANSYNC_TEST_CMD"
    bash -c "$TANSYNC_TEST_CMD" || test_rc=$?
else
    log "running: cargo test --workspace --features tansync/kerberos"
    cargo test --workspace --features tansync/kerberos 2>&1 | tee "$WORKDIR/cargo-test.log" || test_rc=$?
    log "running: bash tests/package.sh"
    pkg_rc=0
    bash tests/package.sh "$WORKDIR/cargo-test.log" || pkg_rc=$?
    ((test_rc == 0)) && test_rc=$pkg_rc
    # One closing line for the whole run (cargo prints one result line per test
    # binary, and the last of them is often an empty doc-test run).
    summary_line=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
         END { printf "summary: %d passed, %d failed\n", p, f }' "$WORKDIR/cargo-test.log")
fi
log "tests exited with $test_rc"
exit "$test_rc"
