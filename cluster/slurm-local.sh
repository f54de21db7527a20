#!/usr/bin/env bash
# A one-node Slurm on loopback, for trying cluster/slurm.sbatch (and for EndToEndSlurmTests): Debian's slurm-wlm and
# munge, configured here, started as root without systemd.
#   cluster/slurm-local.sh up       # installs slurm-wlm + munge if missing, starts munged, slurmctld, slurmd; waits for idle
#   eval "$(cluster/slurm-local.sh env)"   # SLURM_CONF for sinfo / sbatch / scontrol / scancel in this shell
#   cluster/slurm-local.sh status   # daemons and sinfo
#   cluster/slurm-local.sh down     # stops the daemons and removes the directory
# Everything (slurm.conf, munge key and socket, state, spool, logs) lives in DAFT_SLURM_DIR (default /tmp/daft-slurm);
# nothing is written to /etc. Ports: DAFT_SLURMCTLD_PORT (6817), DAFT_SLURMD_PORT (6818). Root only.
set -euo pipefail

DIR="${DAFT_SLURM_DIR:-/tmp/daft-slurm}"
CTLD_PORT="${DAFT_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${DAFT_SLURMD_PORT:-6818}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"

started=0   # set once `up` has started a daemon: a failure after that stops them again
die() {
  echo "slurm-local: $*" >&2
  [ "$started" -eq 1 ] && down_daemons
  exit 1
}
# Exit status 3: the packages are missing and cannot be installed (no apt-get, no network); tests skip on it.
no_packages() { echo "slurm-local: $*" >&2; exit 3; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"; }

install_packages() {
  local missing=()
  for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || no_packages "slurm-wlm and munge are not installed and there is no apt-get"
  echo "slurm-local: installing ${missing[*]}"
  # no systemd in the container: the packages' service start attempts fail harmlessly
  apt-get update -qq || no_packages "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
    || no_packages "apt-get install slurm-wlm munge failed"
}

# Signals the daemon in a pid file (TERM, then KILL after 10 s) and waits for it to go.
stop_pidfile() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  rm -f "$file"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  # leave the OS a quarter: a node whose RealMemory exceeds what slurmd finds is drained
  mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 3 / 4 }' /proc/meminfo)
  cat > "$CONF" <<EOF
# written by cluster/slurm-local.sh: one node on loopback, no accounting
ClusterName=daftlocal
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s; Slurm's minimum is 5)
AuthInfo=socket=$DIR/munge/munge.socket.2,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# the main scheduling pass every second (default 60 s): a requeued job starts as soon as its BeginTime passes
SchedulerParameters=sched_interval=1
MpiDefault=none
JobRequeue=1
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  mkdir -p "$DIR/munge"
  chown munge:munge "$DIR/munge"; chmod 0755 "$DIR/munge"   # munged: clients need x on the socket dir
  if command -v mungekey >/dev/null; then
    runuser -u munge -- mungekey --create --keyfile="$DIR/munge/munge.key" --force
  else
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$DIR/munge/munge.key"
  fi
  chmod 0400 "$DIR/munge/munge.key"
  detached runuser -u munge -- munged --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
    || die "munged did not start: $(tail -3 "$DIR/munge/munged.log" 2>/dev/null)"
  for _ in $(seq 50); do [ -S "$DIR/munge/munge.socket.2" ] && break; sleep 0.1; done
  munge --socket="$DIR/munge/munge.socket.2" -n | unmunge --socket="$DIR/munge/munge.socket.2" >/dev/null \
    || die "munge round trip failed: $(tail -3 "$DIR/munge/munged.log" 2>/dev/null)"
}

# Starts a daemon with none of this shell's descriptors: a daemon holding the caller's stdout pipe (or the socket
# Foundation's Process watches) would make `$(slurm-local.sh up)` and a test's wait for `up` hang until `down`.
detached() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    exec "$@" </dev/null >>"$DIR/log/daemons.log" 2>&1
  )
}

node_state() { sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -1; }

up() {
  need_root
  install_packages
  [ -f "$DIR/slurmctld.pid" ] || [ -f "$DIR/slurmd.pid" ] || [ -f "$DIR/munge/munged.pid" ] && down_daemons
  rm -rf "$DIR"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  chmod 0755 "$DIR"
  write_conf
  started=1
  start_munge
  detached slurmctld -f "$CONF" -i || die "slurmctld did not start: $(tail -5 "$DIR/log/slurmctld.log" 2>/dev/null)"
  detached slurmd -f "$CONF" -N localhost || die "slurmd did not start: $(tail -5 "$DIR/log/slurmd.log" 2>/dev/null)"
  local state=""
  for _ in $(seq 300); do
    state=$(node_state)
    case "$state" in idle*) break ;; esac
    sleep 0.1
  done
  case "$state" in
    idle*) echo "slurm-local: up: node localhost idle, $(nproc) CPUs (SLURM_CONF=$CONF)" ;;
    *) echo "slurm-local: node state '$state' after 30 s" >&2
       tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
       down_daemons; exit 1 ;;
  esac
}

down_daemons() {
  # jobs first: slurmstepd and the job's processes outlive slurmd
  if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    local jobs; jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      scancel --signal=KILL --full $jobs 2>/dev/null || true
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
    fi
  fi
  stop_pidfile "$DIR/slurmd.pid"
  stop_pidfile "$DIR/slurmctld.pid"
  stop_pidfile "$DIR/munge/munged.pid"
}

down() {
  need_root
  down_daemons
  rm -rf "$DIR"
  echo "slurm-local: down"
}

status() {
  local any=0
  for f in "$DIR/munge/munged.pid" "$DIR/slurmctld.pid" "$DIR/slurmd.pid"; do
    local name; name=$(basename "$f" .pid)
    if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then echo "$name: running (pid $(cat "$f"))"; any=1
    else echo "$name: not running"; fi
  done
  [ $any -eq 1 ] && sinfo -N -l 2>/dev/null || true
  [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
