#!/usr/bin/env bash
# Install the system packages needed for phasic's Slurm integration tests:
# a single-node Slurm (slurmctld, slurmd, client tools), slurmdbd for job
# accounting (sacct), munge for authentication and MariaDB as slurmdbd's
# storage backend.
#
# Idempotent: when every needed program is already present it returns at once.
# When not run as root (or without apt-get) it prints a message and exits 0;
# the Slurm tests then skip with that reason.
#
# Usage: scripts/install_system_deps.sh
set -u

PKGS="slurm-wlm slurmdbd munge mariadb-server"
# One program per package we rely on; all present means "already installed".
NEEDED="slurmctld slurmd slurmdbd sbatch sacct sacctmgr sinfo munged mariadb-install-db mariadbd"

missing=""
for prog in $NEEDED; do
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$prog" >/dev/null 2>&1; then
        missing="$missing $prog"
    fi
done

if [ -z "$missing" ]; then
    echo "install_system_deps: Slurm, slurmdbd, munge and MariaDB already installed"
    exit 0
fi

if [ "$(id -u)" != "0" ]; then
    echo "install_system_deps: not root, cannot install ($PKGS); missing programs:$missing." \
         "Slurm tests will be skipped. Run this script as root to enable them."
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: apt-get not found; install $PKGS by hand (missing:$missing)." \
         "Slurm tests will be skipped."
    exit 0
fi

echo "install_system_deps: installing $PKGS (missing:$missing)"
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp /tmp/phasic-apt.XXXXXX.log)"
if ! apt-get update -qq >"$log" 2>&1; then
    echo "install_system_deps: 'apt-get update' failed; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
# policy-rc.d 101 stops the packages' maintainer scripts from starting daemons
# (there is no init system here; the test fixture starts its own daemons).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
rc=0
apt-get install -y -qq --no-install-recommends $PKGS >>"$log" 2>&1 || rc=$?
if [ "$created_policy" = 1 ]; then
    rm -f /usr/sbin/policy-rc.d
fi
if [ "$rc" != 0 ]; then
    echo "install_system_deps: 'apt-get install $PKGS' failed (exit $rc); last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit "$rc"
fi
rm -f "$log"
echo "install_system_deps: installed $PKGS"
