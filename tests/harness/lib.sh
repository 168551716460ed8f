# shellcheck shell=bash
# Shared helpers for the tansync test-server harness. Sourced, not executed.

HARNESS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HARNESS_DIR/../.." && pwd)"
export HARNESS_DIR REPO_ROOT
# The virtualenv holding the Python tools of python-requirements.txt (install-deps.sh
# makes it, start-servers.sh exports the tools' paths in env.sh).
PYTOOLS_DIR="${TANSYNC_PYTOOLS_DIR:-$REPO_ROOT/target/pytools}"
export PYTOOLS_DIR

log() { printf '[harness %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[harness] ERROR: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a log file, framed, to stderr.
show_log_tail() {
    local file=$1 lines=${2:-60}
    if [[ -f $file ]]; then
        printf '%s\n' "----- last $lines lines of $file -----" >&2
        tail -n "$lines" "$file" >&2 || true
        printf '%s\n' "----- end of $file -----" >&2
    fi
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Absolute path of an existing or to-be-created directory.
abs_dir() {
    mkdir -p "$1"
    (cd "$1" && pwd)
}

# A random password of letters and digits, with a fixed prefix so it always
# satisfies AD complexity rules (upper, lower, digit, symbol).
gen_password() {
    local rnd
    rnd="$(openssl rand -base64 48 | tr -dc 'A-Za-z0-9' | cut -c1-24)"
    printf 'Ts9-%s' "$rnd"
}

# Write a secret to a file (mode 600, no trailing newline).
write_secret() {
    local file=$1 value=$2
    (umask 077 && printf '%s' "$value" >"$file")
    chmod 600 "$file"
}

# Is PID alive (and not a zombie waiting to be reaped)?
pid_alive() {
    local stat
    [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat=${stat##*") "}
    [[ ${stat:0:1} != Z ]]
}
