#!/usr/bin/env bash
# Stop a Slurm test instance started by scripts/slurm_up.sh.
#
# Usage: scripts/slurm_down.sh STATEDIR [--rm]
#
# Cancels the instance's jobs, then stops the daemons listed in STATEDIR/pids
# (SIGTERM to all, SIGKILL to those still alive after 10 s). A pid is only signalled
# while its process still carries PHASIC_SLURM_STATEDIR=STATEDIR in its
# environment, so a recycled pid or a daemon of another instance is never
# touched. Finally kills leftover processes of the instance (e.g. slurmstepd)
# found by the same marker, and /etc/slurm/slurm.conf if it names this
# instance. With --rm the state directory is removed afterwards.
set -u

if [ $# -lt 1 ]; then
    echo "usage: $0 STATEDIR [--rm]" >&2
    exit 2
fi
STATEDIR="$1"
REMOVE=0
[ "${2:-}" = "--rm" ] && REMOVE=1
if [ -d "$STATEDIR" ]; then
    STATEDIR="$(cd "$STATEDIR" && pwd)"
else
    # Directory already gone: only the sweep by marker below can still apply.
    echo "slurm_down: no state directory '$STATEDIR'; stopping leftover processes only" >&2
fi
MARK="PHASIC_SLURM_STATEDIR=$STATEDIR"
unset PHASIC_SLURM_STATEDIR

ours() {  # ours PID: true if PID is a live process of this instance
    { tr '\0' '\n' < "/proc/$1/environ"; } 2>/dev/null | grep -qxF "$MARK"
}

pid_of() {  # pid_of NAME: pid recorded for daemon NAME
    [ -f "$STATEDIR/pids" ] && awk -v n="$1" '$1 == n {print $2}' "$STATEDIR/pids" | tail -n 1
}

# Cancel jobs while slurmctld is still up, so their processes end cleanly.
ctld="$(pid_of slurmctld)"
if [ -n "$ctld" ] && ours "$ctld" && [ -f "$STATEDIR/etc/slurm.conf" ]; then
    export SLURM_CONF="$STATEDIR/etc/slurm.conf"
    jobs="$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
        timeout 10 scancel $jobs 2>/dev/null || true
        for i in $(seq 1 50); do
            [ -z "$(timeout 10 squeue -h -t R,CG,PD -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

# Signal all daemons (newest first), then wait for them together; the state
# is thrown away, so an orderly one-by-one shutdown buys nothing.
pids=""
if [ -f "$STATEDIR/pids" ]; then
    while read -r name pid; do
        if [ -n "$pid" ] && ours "$pid"; then
            kill -TERM "$pid" 2>/dev/null && pids="$pids $name:$pid"
        fi
    done < <(tac "$STATEDIR/pids")
fi
for i in $(seq 1 50); do
    alive=""
    for entry in $pids; do
        ours "${entry#*:}" && alive="$alive $entry"
    done
    pids="$alive"
    [ -z "$pids" ] && break
    sleep 0.2
done
for entry in $pids; do
    echo "slurm_down: ${entry%%:*} (pid ${entry#*:}) ignored SIGTERM for 10 s; sending SIGKILL" >&2
    kill -KILL "${entry#*:}" 2>/dev/null || true
done

# Leftovers of this instance (slurmstepd and the like inherit the marker).
for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    [ "$pid" = "$$" ] || [ "$pid" = "$PPID" ] && continue
    if ours "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
done

# The copy at the default config path, if it is this instance's.
SYS_CONF=/etc/slurm/slurm.conf
if [ -f "$SYS_CONF" ] && [ "$(sed -n 's/^# phasic-slurm-statedir: //p' "$SYS_CONF" | head -n 1)" = "$STATEDIR" ]; then
    rm -f "$SYS_CONF"
fi

if [ "$REMOVE" = 1 ]; then
    rm -rf "$STATEDIR"
fi
exit 0
