#!/usr/bin/env bash
# Start a private single-node Slurm cluster with job accounting, for tests.
#
# Usage: scripts/slurm_up.sh STATEDIR [PARTITION]
#
# Everything lives under STATEDIR (use a short path such as /tmp/phasic-slurm-XXXX:
# Unix socket paths are limited to ~100 characters): its own munge key and
# munged socket, a MariaDB data directory on a free TCP port, slurmdbd,
# slurmctld and slurmd on free ports, configs, logs and spool directories.
# No system daemon is touched, so several instances (e.g. a stale one from an
# earlier session) can coexist. The one file written outside STATEDIR is a copy
# of the config at /etc/slurm/slurm.conf (see below; PHASIC_SLURM_SYSTEM_CONF=0
# turns it off), needed by clients that drop SLURM_CONF from the environment.
#
# Needs root (all daemons run as root; jobs run as the submitting user) and the
# packages from scripts/install_system_deps.sh.
#
# On success prints "SLURM_CONF=STATEDIR/etc/slurm.conf" on stdout and writes
#   STATEDIR/env          shell-sourceable: export SLURM_CONF=...
#   STATEDIR/pids         "name pid" per daemon started, in start order
#   STATEDIR/info         key=value: partition, cluster, node, cpus, ports, ...
#   STATEDIR/jobcomp.txt  job-completion records (jobcomp/filetxt)
#   /etc/slurm/slurm.conf  copy of the config, when free (info: system_conf=)
# On failure stops every daemon it started, prints the reason and the tail of
# the failing daemon's log on stderr and exits non-zero.
#
# Each daemon carries PHASIC_SLURM_STATEDIR=STATEDIR in its environment, which
# scripts/slurm_down.sh uses to make sure it only stops processes of this
# instance. Stop it with: scripts/slurm_down.sh STATEDIR
#
# Environment: PHASIC_SLURM_TIMEOUT (seconds per startup wait, default 60),
# PHASIC_SLURM_CPUS (CPUs the node advertises, default max(nproc, 4)),
# PHASIC_SLURM_KEEP_ON_FAILURE (if set, leave daemons running on failure, for debugging).
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 STATEDIR [PARTITION]" >&2
    exit 2
fi
STATEDIR="$1"
PARTITION="${2:-debug}"
TIMEOUT="${PHASIC_SLURM_TIMEOUT:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"

die() {
    echo "slurm_up: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (uid is $(id -u)); the Slurm daemons need it"
for prog in munged mungekey mariadb-install-db mariadbd mariadb mariadb-admin \
            slurmdbd slurmctld slurmd sbatch sinfo sacct sacctmgr scontrol; do
    command -v "$prog" >/dev/null 2>&1 \
        || die "program '$prog' not found; run scripts/install_system_deps.sh as root first"
done
[[ "$PARTITION" =~ ^[A-Za-z0-9_]+$ ]] || die "partition name '$PARTITION' must be alphanumeric"

mkdir -p "$STATEDIR"
STATEDIR="$(cd "$STATEDIR" && pwd)"
[ ! -e "$STATEDIR/pids" ] || die "'$STATEDIR' already holds an instance (pids file exists); use a fresh directory"
[ "${#STATEDIR}" -le 60 ] || die "state directory path '$STATEDIR' is too long for Unix sockets; use a short one like /tmp/phasic-slurm-XXXX"
chmod 755 "$STATEDIR"

ETC="$STATEDIR/etc"; LOG="$STATEDIR/log"; RUN="$STATEDIR/run"
mkdir -p "$ETC" "$LOG" "$RUN" "$STATEDIR/spool/ctld" "$STATEDIR/spool/d" \
         "$STATEDIR/mysql/data" "$STATEDIR/mysql/run"
mkdir -m 700 -p "$STATEDIR/munge"
chmod 755 "$RUN"
: > "$STATEDIR/pids"

FAILED_LOG=""
on_exit() {
    local rc=$?
    [ "$rc" != 0 ] || return 0
    # Stop the daemons first, so that a closed stderr (SIGPIPE) cannot leave
    # them running; then report.
    trap '' PIPE
    trap '' INT TERM HUP
    if [ -z "${PHASIC_SLURM_KEEP_ON_FAILURE:-}" ]; then
        env -u PHASIC_SLURM_STATEDIR "$HERE/slurm_down.sh" "$STATEDIR" >"$LOG/down.out" 2>&1 || true
    fi
    local f
    for f in $FAILED_LOG; do
        if [ -s "$f" ]; then
            echo "---- last lines of $f ----" >&2
            tail -n 25 "$f" >&2
        fi
    done
    if [ -n "${PHASIC_SLURM_KEEP_ON_FAILURE:-}" ]; then
        echo "slurm_up: PHASIC_SLURM_KEEP_ON_FAILURE set; daemons left running (pids in $STATEDIR/pids)" >&2
    else
        echo "slurm_up: stopped the daemons started so far" >&2
    fi
}
on_signal() {
    echo "slurm_up: interrupted" >&2
    exit 130
}
trap on_signal INT TERM HUP
trap on_exit EXIT

# free_port VAR: set VAR to a free TCP port on 127.0.0.1, distinct from the
# ones picked before.
PICKED=" "
free_port() {
    local p i
    for i in $(seq 1 200); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        case "$PICKED" in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null \
           && ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
            PICKED="$PICKED$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free TCP port found"
}

# start_daemon NAME LOGFILES COMMAND...: start COMMAND in the foreground mode of
# the daemon, in its own session, detached from our stdio; record its pid.
start_daemon() {
    local name="$1" logs="$2"; shift 2
    setsid env PHASIC_SLURM_STATEDIR="$STATEDIR" "$@" </dev/null >"$LOG/$name.out" 2>&1 &
    local pid=$!
    echo "$name $pid" >> "$STATEDIR/pids"
    eval "PID_$name=$pid"
    FAILED_LOG="$LOG/$name.out $logs"
}

# wait_until NAME DESCRIPTION COMMAND...: poll COMMAND until it succeeds, while
# daemon NAME stays alive, for at most $TIMEOUT seconds.
wait_until() {
    local name="$1" what="$2"; shift 2
    local pidvar="PID_$name" deadline=$(( SECONDS + TIMEOUT )) probe="$LOG/probe.out"
    while ! "$@" >"$probe" 2>&1; do
        if ! kill -0 "${!pidvar}" 2>/dev/null; then
            die "$name (pid ${!pidvar}) exited while waiting for $what"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "timed out after ${TIMEOUT}s waiting for $what; last check said: $(tail -n 5 "$probe")"
        fi
        sleep 0.2
    done
}

HOST="$(hostname -s)"
NCPU="$(nproc)"
CPUS="${PHASIC_SLURM_CPUS:-$(( NCPU > 4 ? NCPU : 4 ))}"
[[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "PHASIC_SLURM_CPUS='$CPUS' is not a positive integer; unset it or give e.g. 4"
MEM="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)"
[ -n "$MEM" ] || die "could not read RealMemory from 'slurmd -C'"
free_port DBPORT; free_port DBDPORT; free_port CTLDPORT; free_port SLURMDPORT
CLUSTER="phasic"
DBPASS="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# ---- munge: private key and socket --------------------------------------------------
FAILED_LOG="$STATEDIR/munge/mungekey.log"
mungekey -c -b 1024 -k "$STATEDIR/munge/munge.key" >"$FAILED_LOG" 2>&1 \
    || die "mungekey failed"
MUNGE_SOCKET="$RUN/munge.socket"
start_daemon munged "$STATEDIR/munge/munged.log" \
    munged --foreground --socket="$MUNGE_SOCKET" --key-file="$STATEDIR/munge/munge.key" \
    --log-file="$STATEDIR/munge/munged.log" --pid-file="$STATEDIR/munge/munged.pid" \
    --seed-file="$STATEDIR/munge/munged.seed"
wait_until munged "munged to answer on $MUNGE_SOCKET" \
    bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"

# ---- MariaDB for slurmdbd -----------------------------------------------------------
MYCNF="$STATEDIR/mysql/my.cnf"
cat > "$MYCNF" <<EOF
[mysqld]
user=root
datadir=$STATEDIR/mysql/data
socket=$STATEDIR/mysql/run/mysqld.sock
pid-file=$STATEDIR/mysql/run/mysqld.pid
port=$DBPORT
bind-address=127.0.0.1
skip-name-resolve
log-error=$LOG/mariadb.err
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
[client]
socket=$STATEDIR/mysql/run/mysqld.sock
user=root
EOF
FAILED_LOG="$LOG/mariadb-install-db.log"
mariadb-install-db --defaults-file="$MYCNF" --user=root --skip-test-db \
    --auth-root-authentication-method=socket >"$FAILED_LOG" 2>&1 \
    || die "mariadb-install-db failed"
start_daemon mariadb "$LOG/mariadb.err" mariadbd --defaults-file="$MYCNF"
wait_until mariadb "MariaDB to accept connections" mariadb-admin --defaults-file="$MYCNF" ping
mariadb --defaults-file="$MYCNF" -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" >>"$LOG/mariadb.out" 2>&1 \
    || die "could not create the MariaDB user for slurmdbd"

# ---- Slurm configuration ------------------------------------------------------------
cat > "$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBDPORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DBPORT
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$ETC/slurmdbd.conf"

cat > "$ETC/slurm.conf" <<EOF
# Generated by scripts/slurm_up.sh for a private test instance.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLDPORT
SlurmdPort=$SLURMDPORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATEDIR/spool/ctld
SlurmdSpoolDir=$STATEDIR/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SlurmdParameters=config_overrides
ReturnToService=2
InactiveLimit=0
KillWait=5
MailProg=/bin/true
MinJobAge=300
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBDPORT
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/filetxt
JobCompLoc=$STATEDIR/jobcomp.txt
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$ETC/slurm.conf"
: > "$STATEDIR/jobcomp.txt"

# ---- /etc/slurm/slurm.conf ------------------------------------------------------------
# Clients find the config through SLURM_CONF, but some strip SLURM_* variables
# before calling srun inside a job (snakemake-executor-plugin-slurm-jobstep
# does), so a copy at the default path is needed for those. It is written only
# when no such file exists or the existing one was written by an instance of
# this script that is no longer running; it carries a marker line naming its
# state directory, and slurm_down.sh removes it again.
SYS_CONF=/etc/slurm/slurm.conf
SYS_CONF_INSTALLED=""
marker_alive() {  # marker_alive DIR: true if DIR's slurmctld is still running
    local pid
    pid="$(awk '$1 == "slurmctld" {print $2}' "$1/pids" 2>/dev/null | tail -n 1)"
    [ -n "$pid" ] && { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null \
        | grep -qxF "PHASIC_SLURM_STATEDIR=$1"
}
if [ "${PHASIC_SLURM_SYSTEM_CONF:-1}" != 0 ]; then
    owner=""
    [ -e "$SYS_CONF" ] && owner="$(sed -n 's/^# phasic-slurm-statedir: //p' "$SYS_CONF" | head -n 1)"
    if [ -e "$SYS_CONF" ] && [ -z "$owner" ]; then
        echo "slurm_up: warning: $SYS_CONF exists and was not written by slurm_up.sh;" \
             "leaving it alone (jobs that drop SLURM_CONF will not find this instance)" >&2
    elif [ -n "$owner" ] && [ "$owner" != "$STATEDIR" ] && marker_alive "$owner"; then
        echo "slurm_up: warning: $SYS_CONF belongs to the running instance in $owner;" \
             "leaving it alone (jobs that drop SLURM_CONF will not find this instance)" >&2
    else
        mkdir -p "$(dirname "$SYS_CONF")"
        { echo "# phasic-slurm-statedir: $STATEDIR"; cat "$SLURM_CONF"; } > "$SYS_CONF.phasic.$$"
        mv -f "$SYS_CONF.phasic.$$" "$SYS_CONF"
        SYS_CONF_INSTALLED="$SYS_CONF"
    fi
fi

# ---- slurmdbd, cluster registration, slurmctld, slurmd ------------------------------
start_daemon slurmdbd "$LOG/slurmdbd.log" slurmdbd -D
wait_until slurmdbd "slurmdbd to answer (sacctmgr list cluster)" \
    timeout 10 sacctmgr -n list cluster
FAILED_LOG="$LOG/slurmdbd.log"
timeout 20 sacctmgr -i add cluster "$CLUSTER" >"$LOG/sacctmgr.out" 2>&1 \
    || die "'sacctmgr add cluster $CLUSTER' failed: $(cat "$LOG/sacctmgr.out")"

start_daemon slurmctld "$LOG/slurmctld.log" slurmctld -D -f "$SLURM_CONF"
wait_until slurmctld "slurmctld to answer (scontrol ping)" \
    bash -c "timeout 10 scontrol ping | grep -q UP"
start_daemon slurmd "$LOG/slurmd.log" slurmd -D -f "$SLURM_CONF"
node_idle() {
    [ "$(timeout 10 sinfo -h -n "$HOST" -p "$PARTITION" -o %T 2>/dev/null)" = "idle" ]
}
wait_until slurmd "node $HOST to be idle in partition $PARTITION (sinfo)" node_idle
sacct_ok() {
    local err
    err="$(timeout 10 sacct -n -X -a -S now-1hours -o JobID 2>&1 >/dev/null)" && [ -z "$err" ]
}
FAILED_LOG="$LOG/slurmdbd.log $LOG/slurmctld.log"
wait_until slurmctld "sacct to answer" sacct_ok

cat > "$STATEDIR/env" <<EOF
export SLURM_CONF=$SLURM_CONF
EOF
cat > "$STATEDIR/info" <<EOF
partition=$PARTITION
cluster=$CLUSTER
node=$HOST
cpus=$CPUS
real_memory_mb=$MEM
slurm_conf=$SLURM_CONF
jobcomp=$STATEDIR/jobcomp.txt
munge_socket=$MUNGE_SOCKET
mariadb_port=$DBPORT
slurmdbd_port=$DBDPORT
slurmctld_port=$CTLDPORT
slurmd_port=$SLURMDPORT
system_conf=$SYS_CONF_INSTALLED
EOF
echo "SLURM_CONF=$SLURM_CONF"
