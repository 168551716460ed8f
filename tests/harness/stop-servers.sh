#!/usr/bin/env bash
# Stop the test servers that start-servers.sh started in WORKDIR.
#
#   bash tests/harness/stop-servers.sh WORKDIR
#
# Only the PIDs recorded in WORKDIR/pids/*.pid are signalled (each server
# runs as the leader of its own process group, so its worker processes are
# stopped with it). Safe to run when nothing is running.
set -euo pipefail

# shellcheck source=tests/harness/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || die "usage: stop-servers.sh WORKDIR"
WORKDIR=$1
PIDS="$WORKDIR/pids"
[[ -d $PIDS ]] || exit 0

# Does PID still belong to the program we started (guards against PID reuse)?
is_ours() {
    local pid=$1 name=$2 comm
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    case $name in
        samba) [[ $comm == samba || $comm == ldap* ]] ;;
        *) [[ $comm == "$name" ]] ;;
    esac
}

# Live (non-zombie) processes in process group PGID: the server and its
# workers.
group_members() {
    local pgid=$1 stat rest state pg
    for stat in /proc/[0-9]*/stat; do
        rest="$(cat "$stat" 2>/dev/null)" || continue
        # comm (field 2) may contain spaces: drop everything up to the last
        # ") "; then come state, ppid and the process group.
        rest=${rest##*") "}
        read -r state _ pg _ <<<"$rest"
        if [[ $pg == "$pgid" && $state != Z ]]; then
            stat=${stat#/proc/}
            printf '%s\n' "${stat%/stat}"
        fi
    done
}

# Send SIGTERM to every recorded server first, then wait for each (bounded),
# falling back to SIGKILL for the whole process group.
declare -A signalled=()
for name in samba slapd; do
    file="$PIDS/$name.pid"
    [[ -f $file ]] || continue
    pid="$(cat "$file")"
    if pid_alive "$pid" && is_ours "$pid" "$name"; then
        log "stopping $name (PID $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        signalled[$name]=$pid
    else
        rm -f "$file"
    fi
done

for name in "${!signalled[@]}"; do
    pid=${signalled[$name]}
    deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        if ! pid_alive "$pid" && [[ -z $(group_members "$pid") ]]; then
            break
        fi
        sleep 0.2
    done
    if pid_alive "$pid" || [[ -n $(group_members "$pid") ]]; then
        log "$name did not stop within 20 s; sending SIGKILL to its process group $pid"
        kill -KILL -- "-$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$PIDS/$name.pid"
done
