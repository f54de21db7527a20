#!/usr/bin/env bash
# Run N ranks of a command on this machine with OpenMPI's mpirun.
#
#   launch/local.sh -n 2 -- daft finetune ...
#   launch/local.sh -n 4 --dry-run -- .build/release/daft-transport bench-allreduce
#   launch/local.sh -n 2 -t 4 -- daft finetune ...     # 2 ranks × 4 compute threads each
#
# Options before `--`:
#   -n N         number of ranks (default 2)
#   -t T         compute threads per rank (default 1): exported as OPENBLAS_NUM_THREADS, daft's --threads default
#   -x VAR[=V]   extra environment variable for the ranks (repeatable)
#   --dry-run    print the mpirun line, do not run it
#   anything else is passed to mpirun verbatim (e.g. --mca btl self,vader)
# Adds --oversubscribe and --bind-to none when N·T > cores, else --bind-to core (with T > 1: --map-by slot:PE=T
# --bind-to core, each rank bound to its own T cores; plain --bind-to core would put all T threads on one core);
# exports OPENBLAS_NUM_THREADS=T to every rank (and DAFT_STALL_TIMEOUT when set); allows running as root.
set -euo pipefail

n=2
threads=1
dry=0
extra=()
envs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|-np) n="$2"; shift 2 ;;
    -t|--threads) threads="$2"; shift 2 ;;
    -x) envs+=(-x "$2"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [[ $# -eq 0 ]]; then echo "local.sh: missing command after --" >&2; exit 2; fi
if ! [[ "$n" =~ ^[0-9]+$ ]] || [[ "$n" -lt 1 ]]; then echo "local.sh: -n must be a positive integer" >&2; exit 2; fi
if ! [[ "$threads" =~ ^[0-9]+$ ]] || [[ "$threads" -lt 1 ]]; then echo "local.sh: -t must be a positive integer" >&2; exit 2; fi
command -v mpirun >/dev/null || { echo "local.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 127; }

cores=$(nproc)
args=(mpirun -np "$n")
if [[ $(( n * threads )) -gt "$cores" ]]; then
  args+=(--oversubscribe --bind-to none)
elif [[ "$threads" -gt 1 ]]; then
  args+=(--map-by "slot:PE=$threads" --bind-to core)
else
  args+=(--bind-to core)
fi
export OPENBLAS_NUM_THREADS="$threads"
args+=(-x OPENBLAS_NUM_THREADS)
if [[ -n "${DAFT_STALL_TIMEOUT:-}" ]]; then args+=(-x DAFT_STALL_TIMEOUT); fi
args+=("${envs[@]+"${envs[@]}"}" "${extra[@]+"${extra[@]}"}" "$@")

source "$(dirname "$0")/common.sh"
