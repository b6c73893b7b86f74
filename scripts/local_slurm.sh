#!/usr/bin/env bash
# A single-node SLURM on this machine, for the tests and for trying the SLURM launcher by hand:
#   bash scripts/local_slurm.sh start   # installs slurm-wlm + munge (apt) if missing, starts them
#   bash scripts/local_slurm.sh stop    # stops the daemons it started (by their pid files)
# Needs root (apt, munged, slurmd). State, logs and pid files live in $LOCAL_SLURM_DIR
# (default /tmp/lovaszseg-slurm); the config goes where the clients look, /etc/slurm/slurm.conf,
# and an existing slurm.conf that this script did not write is never replaced.
set -euo pipefail

state=${LOCAL_SLURM_DIR:-/tmp/lovaszseg-slurm}
conf=/etc/slurm/slurm.conf
marker="# written by lovaszseg scripts/local_slurm.sh"
munge_pid=/run/munge/munged.pid

say() { echo "local_slurm: $*" >&2; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
    return
  fi
  say "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

write_munge_key() {
  install -d -o munge -g munge -m 0700 /etc/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
}

write_slurm_conf() {
  if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
    say "$conf exists and was not written by this script; not touching it"
    exit 1
  fi
  local host cpus memory_mb
  host=$(hostname -s)
  cpus=$(nproc)
  # slurmd drains a node that has less memory than configured: announce 90 % of it
  memory_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
  mkdir -p /etc/slurm "$state/ctld" "$state/d"
  # No cgroup.conf: Debian's 22.05 does not know CgroupPlugin=disabled, and without the file
  # slurmd starts (nothing here uses cgroups: linuxproc tracking, no task plugin).
  cat >"$conf" <<EOF
$marker
ClusterName=lovaszseg
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
InactiveLimit=0
KillWait=30
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install_packages
  write_munge_key
  write_slurm_conf
  install -d -o munge -g munge -m 0755 /run/munge /var/lib/munge /var/log/munge
  if ! alive "$munge_pid"; then
    runuser -u munge -- munged
  fi
  if ! alive "$state/slurmctld.pid"; then
    slurmctld
  fi
  if ! alive "$state/slurmd.pid"; then
    slurmd
  fi
  local deadline=$((SECONDS + ${LOCAL_SLURM_TIMEOUT:-60}))
  until timeout 10 srun -N1 -n1 hostname >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "srun does not answer; logs: $state/slurmctld.log $state/slurmd.log"
      tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
      exit 1
    fi
    sleep 1
  done
  say "up: $(sinfo --noheader --format='%P %D node(s) %c CPUs %m MB %T')"
}

stop_daemon() {
  local pid_file=$1
  if alive "$pid_file"; then
    local pid
    pid=$(cat "$pid_file")
    kill "$pid"
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || return 0
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

stop() {
  stop_daemon "$state/slurmd.pid"
  stop_daemon "$state/slurmctld.pid"
  stop_daemon "$munge_pid"
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
