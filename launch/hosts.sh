#!/usr/bin/env bash
# Run N ranks of a command across the nodes of an OpenMPI hostfile.
#
#   launch/hosts.sh --hostfile cluster/hostfile.example -n 4 -- daft finetune ...
#   launch/hosts.sh --hostfile hosts -n 8 --tcp --if 10.0.0.0/24 -- daft-transport bench-allreduce
#
# Options before `--`:
#   --hostfile F   OpenMPI hostfile ("host slots=K" lines), required
#   -n N           number of ranks (default: sum of slots in the hostfile)
#   -t T           compute threads per rank (default 1; OPENBLAS_NUM_THREADS=T, daft's --threads default); with
#                  T > 1 each rank is bound to T cores (--map-by slot:PE=T --bind-to core): a hostfile of
#                  "node slots=2" lines and 2 × T cores per node is one rank per socket, say
#   --tcp          restrict the byte transfer layer to TCP (--mca btl tcp,self)
#   --if SUBNET    use only this subnet/interface for MPI and ORTE traffic (btl_tcp_if_include, oob_tcp_if_include)
#   --rsh AGENT    remote shell agent for starting the daemons (--mca plm_rsh_agent AGENT; default ssh)
#   -x VAR[=V]     extra environment variable for the ranks (repeatable)
#   --dry-run      print the mpirun line, do not run it
#   anything else is passed to mpirun verbatim
# Always exports OPENBLAS_NUM_THREADS=T, PATH and LD_LIBRARY_PATH (and DAFT_STALL_TIMEOUT when set) to the ranks.
set -euo pipefail

hostfile=""
n=""
threads=1
dry=0
tcp=0
subnet=""
rsh=""
extra=()
envs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hostfile) hostfile="$2"; shift 2 ;;
    -n|-np) n="$2"; shift 2 ;;
    -t|--threads) threads="$2"; shift 2 ;;
    --tcp) tcp=1; shift ;;
    --if) subnet="$2"; shift 2 ;;
    --rsh) rsh="$2"; shift 2 ;;
    -x) envs+=(-x "$2"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [[ -z "$hostfile" ]]; then echo "hosts.sh: --hostfile is required" >&2; exit 2; fi
if [[ ! -r "$hostfile" ]]; then echo "hosts.sh: cannot read hostfile $hostfile" >&2; exit 2; fi
if [[ $# -eq 0 ]]; then echo "hosts.sh: missing command after --" >&2; exit 2; fi
if [[ -z "$n" ]]; then
  n=$(awk '!/^[[:space:]]*(#|$)/ { s = 1; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) { sub(/^slots=/, "", $i); s = $i } t += s } END { print t + 0 }' "$hostfile")
fi
command -v mpirun >/dev/null || { echo "hosts.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 127; }

if ! [[ "$threads" =~ ^[0-9]+$ ]] || [[ "$threads" -lt 1 ]]; then echo "hosts.sh: -t must be a positive integer" >&2; exit 2; fi
export OPENBLAS_NUM_THREADS="$threads"
args=(mpirun --hostfile "$hostfile" -np "$n" -x OPENBLAS_NUM_THREADS -x PATH)
if [[ "$threads" -gt 1 ]]; then args+=(--map-by "slot:PE=$threads" --bind-to core); fi
if [[ -n "${LD_LIBRARY_PATH:-}" ]]; then args+=(-x LD_LIBRARY_PATH); fi
if [[ -n "${DAFT_STALL_TIMEOUT:-}" ]]; then args+=(-x DAFT_STALL_TIMEOUT); fi
if [[ "$tcp" -eq 1 ]]; then args+=(--mca btl tcp,self); fi
if [[ -n "$subnet" ]]; then args+=(--mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet"); fi
if [[ -n "$rsh" ]]; then args+=(--mca plm_rsh_agent "$rsh"); fi
args+=("${envs[@]+"${envs[@]}"}" "${extra[@]+"${extra[@]}"}" "$@")

source "$(dirname "$0")/common.sh"
