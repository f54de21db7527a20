#!/usr/bin/env bash
# daft vs PyTorch training-step throughput, back to back in one session, written into docs/benchmarks.md
# (between <!-- bench-vs-pytorch:begin --> and <!-- bench-vs-pytorch:end -->; the pair is inserted after the
# intro paragraph the first time) and printed to stdout.
#
#   [ROWS="r20 r20t2 r20x2 r18 r50 r50t2"] [STEPS=20] [STEPS224=8] [SKIP_BUILD=1] [NO_DOCS=1] bash launch/bench-vs-pytorch.sh
#
# Each row runs daft, then PyTorch, then daft again (daft's number is the mean of its two runs, both shown;
# ratio = daft / PyTorch). Every process runs under `/usr/bin/time -f %M` for its peak RSS (for 2-rank rows
# the maximum over ranks, measured inside the launcher, and for daft over its two runs).
#   r20    ResNet-20 1×28×28, batch 128, 1 process × 1 thread   daft bench … --threads 1 | torch_ddp_resnet20.py THREADS=1
#   r20t2  the same, 1 process × 2 threads                      daft bench … --threads 2 | THREADS=2
#   r20x2  ResNet-20, 2 ranks × 1 thread, global batch 256      mpirun -np 2 daft bench --batch 256 | torchrun 2 × BATCH=128, SYNCBN=0
#   r18    ResNet-18 3×224×224, batch 16, 1 thread              daft bench --arch resnet18 … | torch_tv_resnet.py resnet18 …
#   r50    ResNet-50 3×224×224, batch 16, 1 thread              daft bench --arch resnet50 … | torch_tv_resnet.py resnet50 …
#   r50t2  ResNet-50 3×224×224, batch 16, 2 threads             --threads 2 | THREADS=2
#   r18x2, r50x2  ResNet-18 / ResNet-50 3×224×224, 2 ranks × 1 thread, global batch 32 (16/rank): daft only (weak
#          scaling vs r18 / r50; the torchvision anchor is single-process)
#   r50b32, r50b64  ResNet-50 at batch 32 / 64, 1 thread, one timed step: for the peak-RSS column
# STEPS: timed steps of the 28×28 rows (default 20); STEPS224: of the 224×224 rows (default 8).
# SKIP_BUILD=1: never run `swift build -c release` (otherwise only run when .build/release/daft is missing).
# NO_DOCS=1: print only, leave docs/benchmarks.md alone. ANCHORS: folder of the PyTorch anchor scripts
# (default ../shared/anchors).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

ALL_ROWS="r20 r20t2 r20x2 r18 r18x2 r50 r50t2 r50x2 r50b32 r50b64"
usage='usage: [ROWS="'"$ALL_ROWS"'"] [STEPS=20] [STEPS224=8] [SKIP_BUILD=1] [NO_DOCS=1] bash launch/bench-vs-pytorch.sh'
case "${1:-}" in
  -h|--help) echo "$usage"; exit 0 ;;
  "") ;;
  *) echo "$usage" >&2; exit 2 ;;
esac

die() { echo "bench-vs-pytorch: $*" >&2; exit 1; }
stage="setup"
trap 'echo "bench-vs-pytorch: $stage: command failed (line $LINENO): $BASH_COMMAND" >&2' ERR

ROWS=${ROWS:-$ALL_ROWS}
STEPS=${STEPS:-20}
STEPS224=${STEPS224:-8}
ANCHORS=${ANCHORS:-../shared/anchors}
for n in "$STEPS" "$STEPS224"; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "STEPS and STEPS224 must be positive integers (got '$n')"; done
read -r -a rows <<<"$ROWS"
[ "${#rows[@]}" -gt 0 ] || die "ROWS is empty; choose from: $ALL_ROWS"
for r in "${rows[@]}"; do [[ " $ALL_ROWS " == *" $r "* ]] || die "unknown row '$r' in ROWS; choose from: $ALL_ROWS"; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-pytorch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [[ "$(id -u)" -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

py=$(bash launch/python-env.sh) || die "setup: launch/python-env.sh failed"
daft=.build/release/daft
if [ ! -x "$daft" ]; then
  [ "${SKIP_BUILD:-0}" = 1 ] && die "setup: $daft is missing and SKIP_BUILD=1"
  echo "+ swift build -c release" >&2
  swift build -c release >&2 || die "setup: swift build -c release failed"
fi
[ -x /usr/bin/time ] || die "setup: /usr/bin/time (GNU time, Debian package 'time') is missing"
for f in torch_ddp_resnet20.py torch_tv_resnet.py; do [ -f "$ANCHORS/$f" ] || die "setup: anchor $ANCHORS/$f is missing"; done
for r in r20x2 r18x2 r50x2; do
  if [[ " ${rows[*]} " == *" $r "* ]]; then command -v mpirun >/dev/null || die "setup: mpirun not found (row $r)"; fi
done

# ---- helpers -------------------------------------------------------------------------------------------
# measure ROW WHAT OUT CMD...: runs CMD (stdout -> OUT, stderr -> OUT.err); on failure one line naming the row.
measure() {
  local row=$1 what=$2 out=$3 rc=0; shift 3
  echo "[$row] $what: $(printf '%q ' "$@")" >&2
  "$@" >"$out" 2>"$out.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    local last
    last=$(grep -v '^[[:space:]]*$' "$out.err" | grep -v '^Command exited with non-zero status' | tail -n 1 || true)
    die "row $row: $what failed (exit $rc): $(printf '%q ' "$@")${last:+ -- $last}"
  fi
}
# daft_img OUT: images_per_s of the JSON object daft --json prints last. daft_field OUT KEY: any field.
daft_field() {
  "$py" - "$1" "$2" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip().startswith("{")]
v = json.loads(lines[-1]).get(sys.argv[2]) if lines else None
print("" if v is None else v)
EOF
}
# torch_img OUT: the last img/s=… PyTorch printed.
torch_img() { grep -o 'img/s=[0-9.]*' "$1" | tail -n 1 | cut -d= -f2 || true; }
# rss_mb FILE...: max peak RSS (GNU time %M, kB; last line of each file) in MB.
rss_mb() { for f in "$@"; do tail -n 1 "$f"; done | awk '{ if ($1 + 0 > m) m = $1 + 0 } END { printf "%.0f", m / 1024 }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

declare -A LABEL D1 D2 T DR TR NOTE HID1 HID2 PK1 PK2 PCT1 PCT2

run_row() {
  local row=$1 threads=1 mode=single tmode daft_args=() torch_cmd=() label note="" tbatch=16 tsteps=$STEPS224
  case "$row" in
    r20)   label="ResNet-20 1×28×28, batch 128, 1 process × 1 thread"; tmode=r20
           daft_args=(--arch resnet20 --input 1x28x28 --batch 128 --threads 1 --steps "$STEPS") ;;
    r20t2) label="ResNet-20 1×28×28, batch 128, 1 process × 2 threads"; threads=2; tmode=r20
           daft_args=(--arch resnet20 --input 1x28x28 --batch 128 --threads 2 --steps "$STEPS")
           note="daft --threads 2 (each kernel splits the batch's samples, BN its channels, over 2 compute threads); torch.set_num_threads(2)" ;;
    r20x2) label="ResNet-20 1×28×28, 2 ranks × 1 thread, global batch 256 (128/rank)"; mode=mpi; tmode=ddp
           daft_args=(--arch resnet20 --input 1x28x28 --batch 256 --threads 1 --steps "$STEPS") ;;
    r18)   label="ResNet-18 3×224×224, batch 16, 1 thread"; tmode=tv
           daft_args=(--arch resnet18 --input 3x224x224 --batch 16 --threads 1 --steps "$STEPS224")
           note="torchvision resnet18(num_classes=10)" ;;
    r50)   label="ResNet-50 3×224×224, batch 16, 1 thread"; tmode=tv
           daft_args=(--arch resnet50 --input 3x224x224 --batch 16 --threads 1 --steps "$STEPS224")
           note="torchvision resnet50(num_classes=10)" ;;
    r50t2) label="ResNet-50 3×224×224, batch 16, 2 threads"; threads=2; tmode=tv
           daft_args=(--arch resnet50 --input 3x224x224 --batch 16 --threads 2 --steps "$STEPS224")
           note="torchvision resnet50(num_classes=10); daft --threads 2, torch.set_num_threads(2)" ;;
    r18x2|r50x2)
           label="ResNet-${row:1:2} 3×224×224, 2 ranks × 1 thread, global batch 32 (16/rank)"; mode=mpi; tmode=none
           daft_args=(--arch "resnet${row:1:2}" --input 3x224x224 --batch 32 --threads 1 --steps "$STEPS224") ;;
    r50b32|r50b64) tbatch=${row#r50b}; tsteps=1; tmode=tv
           label="ResNet-50 3×224×224, batch $tbatch, 1 thread (one timed step: memory)"
           daft_args=(--arch resnet50 --input 3x224x224 --batch "$tbatch" --threads 1 --steps 1)
           note="peak RSS at batch $tbatch; img/s from one step only" ;;
  esac
  stage="row $row"
  local d="$tmp/$row"; mkdir -p "$d"
  local envs=(env OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads")
  case "$tmode" in
    r20) torch_cmd=("${envs[@]}" THREADS="$threads" STEPS="$STEPS" BATCH=128
                    /usr/bin/time -o "$d/rss.torch" -f %M "$py" "$ANCHORS/torch_ddp_resnet20.py") ;;
    tv)  local arch=${daft_args[1]}
         torch_cmd=("${envs[@]}" THREADS="$threads"
                    /usr/bin/time -o "$d/rss.torch" -f %M "$py" "$ANCHORS/torch_tv_resnet.py" "$arch" 3 224 224 "$tbatch" "$tsteps") ;;
    none) ;;
    ddp) mkdir -p "$d/torch"
         # torchrun's workers run sh -> /usr/bin/time -> python, one RSS file per rank.
         torch_cmd=("${envs[@]}" SYNCBN=0 THREADS=1 STEPS="$STEPS" BATCH=128 RSS_DIR="$d/torch"
                    "$py" -m torch.distributed.run --standalone --nproc_per_node 2 --no-python
                    sh -c 'exec /usr/bin/time -o "$RSS_DIR/rss.$RANK" -f %M "$@"' sh "$py" "$ANCHORS/torch_ddp_resnet20.py") ;;
  esac
  local run
  for run in 1 torch 2; do
    if [ "$run" = torch ]; then
      if [ "$tmode" = none ]; then T[$row]=""; continue; fi
      measure "$row" "PyTorch" "$d/torch.out" "${torch_cmd[@]}"
      T[$row]=$(torch_img "$d/torch.out")
      [ -n "${T[$row]}" ] || die "row $row: PyTorch printed no img/s= ($(tail -n 1 "$d/torch.out" 2>/dev/null))"
      continue
    fi
    if [ "$mode" = mpi ]; then
      mkdir -p "$d/daft$run"
      measure "$row" "daft run $run" "$d/daft$run.out" "${envs[@]}" RSS_DIR="$d/daft$run" \
        mpirun --oversubscribe -np 2 --bind-to none -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS -x RSS_DIR \
        sh -c 'exec /usr/bin/time -o "$RSS_DIR/rss.$OMPI_COMM_WORLD_RANK" -f %M "$@"' sh "$daft" bench "${daft_args[@]}" --json
    else
      mkdir -p "$d/daft$run"
      measure "$row" "daft run $run" "$d/daft$run.out" "${envs[@]}" \
        /usr/bin/time -o "$d/daft$run/rss.0" -f %M "$daft" bench "${daft_args[@]}" --json
    fi
    local v; v=$(daft_field "$d/daft$run.out" images_per_s)
    [ -n "$v" ] || die "row $row: daft run $run printed no JSON images_per_s ($(tail -n 1 "$d/daft$run.out" 2>/dev/null))"
    if [ "$run" = 1 ]; then D1[$row]=$v; else D2[$row]=$v; fi
    # the sgemm yardstick daft bench sampled between its steps (the job's, all ranks × threads) and the step's share of it
    local pk pct
    pk=$(daft_field "$d/daft$run.out" sgemm_peak_gflops); pct=$(daft_field "$d/daft$run.out" percent_of_peak)
    if [ "$run" = 1 ]; then PK1[$row]=$pk; PCT1[$row]=$pct; else PK2[$row]=$pk; PCT2[$row]=$pct; fi
    if [ "$mode" = mpi ]; then
      v=$(daft_field "$d/daft$run.out" allreduce_hidden_fraction)
      if [ "$run" = 1 ]; then HID1[$row]=$v; else HID2[$row]=$v; fi
    fi
  done
  local f dfiles=() tfiles=()
  for f in "$d"/daft1/rss.* "$d"/daft2/rss.*; do [ -s "$f" ] && dfiles+=("$f"); done
  for f in "$d"/rss.torch "$d"/torch/rss.*; do [ -s "$f" ] && tfiles+=("$f"); done
  [ "${#dfiles[@]}" -gt 0 ] || die "row $row: /usr/bin/time wrote no RSS file for daft"
  [ "${#tfiles[@]}" -gt 0 ] || [ "$tmode" = none ] || die "row $row: /usr/bin/time wrote no RSS file for PyTorch"
  DR[$row]=$(rss_mb "${dfiles[@]}"); TR[$row]="—"
  if [ "${#tfiles[@]}" -gt 0 ]; then TR[$row]=$(rss_mb "${tfiles[@]}"); fi
  LABEL[$row]=$label; NOTE[$row]=$note
}

# ---- machine -------------------------------------------------------------------------------------------
load=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
cores=$(nproc)
cpu_id=$(awk -F': ' '/^cpu family/ {f=$2} /^model[[:space:]]*:/ {m=$2} END {if (f != "") printf "family %s model %s", f, m}' /proc/cpuinfo)
# which of daft's direct 3×3 kernel families runs (DirectKernelISA.preferred): the ratios depend on it
if grep -qw avx512f /proc/cpuinfo && [ "${DAFT_NO_AVX512:-0}" != 1 ]; then isa="AVX-512: daft's 16-lane direct 3×3 kernels"
else isa="no AVX-512: daft's 8-lane (AVX2) direct 3×3 kernels"; fi
blas_pkg=$(dpkg-query -W -f='${Package} ${Version}' libopenblas0-pthread 2>/dev/null || true)
blas_lib=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
blas_core=$(OPENBLAS_NUM_THREADS=1 python3 -c "import ctypes; l=ctypes.CDLL('libopenblas.so.0'); l.openblas_get_corename.restype=ctypes.c_char_p; l.openblas_get_config.restype=ctypes.c_char_p; print(l.openblas_get_corename().decode(), '/', l.openblas_get_config().decode())" 2>/dev/null || echo "core unknown")
mpi_ver=$(mpirun --version 2>/dev/null | head -n 1 || echo "mpirun not found")
torch_ver=$("$py" -c 'import torch; print(torch.__version__)') || die "setup: cannot import torch from $py"

# ---- run -----------------------------------------------------------------------------------------------
for r in "${rows[@]}"; do run_row "$r"; done
stage="report"

mean() { calc "%.1f" "(${D1[$1]} + ${D2[$1]}) / 2"; }
peak() { calc "%.1f" "(${PK1[$1]} + ${PK2[$1]}) / 2"; }
# the machine's own scaling in the same runs: sgemm of the 2-rank / 2-thread row over 2 × (or 1 ×) the 1-thread row's
sgemm_ceiling() { calc "%.2f" "$(peak "$1") / ($3 * $(peak "$2"))"; }
if [ -n "${D1[r20x2]:-}" ]; then
  n="daft: mpirun, SyncBN, gradient all-reduce $(calc "%.0f" "${HID1[r20x2]:-0} * 100")% / $(calc "%.0f" "${HID2[r20x2]:-0} * 100")% hidden behind backward (allreduce_hidden_fraction, runs 1/2); PyTorch: torchrun + gloo DDP with plain per-rank BN (SYNCBN=0: SyncBatchNorm refuses CPU tensors)"
  if [ -n "${D1[r20]:-}" ]; then
    n+="; weak-scaling efficiency vs 1 × 1 thread row (img/s ÷ 2 × 1-rank img/s): daft $(calc "%.2f" "$(mean r20x2) / (2 * $(mean r20))"), PyTorch $(calc "%.2f" "${T[r20x2]} / (2 * ${T[r20]})"), the machine's sgemm $(sgemm_ceiling r20x2 r20 2)"
  else
    n+="; weak-scaling efficiency needs row r20 in ROWS"
  fi
  NOTE[r20x2]=$n
fi
for pair in "r18x2 r18" "r50x2 r50"; do
  read -r two one <<<"$pair"
  if [ -n "${D1[$two]:-}" ]; then
    n="daft: mpirun, SyncBN, gradient all-reduce $(calc "%.0f" "${HID1[$two]:-0} * 100")% / $(calc "%.0f" "${HID2[$two]:-0} * 100")% hidden behind backward"
    if [ -n "${D1[$one]:-}" ]; then n+="; weak-scaling efficiency vs the 1-rank row: $(calc "%.2f" "$(mean "$two") / (2 * $(mean "$one"))") (the machine's sgemm $(sgemm_ceiling "$two" "$one" 2))"; fi
    NOTE[$two]=$n
  fi
done
for pair in "r20t2 r20" "r50t2 r50"; do
  read -r two one <<<"$pair"
  if [ -n "${D1[$two]:-}" ] && [ -n "${D1[$one]:-}" ]; then
    NOTE[$two]+="; 2 threads vs 1: daft $(calc "%.2f" "$(mean "$two") / $(mean "$one")")×, PyTorch $(calc "%.2f" "${T[$two]} / ${T[$one]}")×, the machine's sgemm (one per thread at once) $(sgemm_ceiling "$two" "$one" 1)×"
  fi
done
for r in "${rows[@]}"; do
  NOTE[$r]+="${NOTE[$r]:+; }daft $(calc "%.0f" "(${PCT1[$r]} + ${PCT2[$r]}) / 2")% of the sgemm rate sampled between its steps ($(peak "$r") GFLOP/s)"
done

table="| setting | daft img/s (run 1, run 2) | PyTorch img/s | ratio | daft / PyTorch peak RSS MB | notes |
|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  m=$(mean "$r")
  if [ -n "${T[$r]}" ]; then tcol=$(calc "%.1f" "${T[$r]}"); ratio=$(calc "%.2f" "$m / ${T[$r]}"); else tcol="—"; ratio="—"; fi
  table+="
| ${LABEL[$r]} | $m ($(calc "%.1f" "${D1[$r]}"), $(calc "%.1f" "${D2[$r]}")) | $tcol | $ratio | ${DR[$r]} / ${TR[$r]} | ${NOTE[$r]} |"
done

if [ "$ROWS" = "$ALL_ROWS" ]; then rows_env=""; else rows_env="ROWS=\"${rows[*]}\" "; fi
cmdline="${rows_env}STEPS=$STEPS STEPS224=$STEPS224 bash launch/bench-vs-pytorch.sh"
block="## daft vs PyTorch, back to back

Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`$cmdline\` ($STEPS timed steps at 28×28, $STEPS224 at 224×224; load average at start $load).
Machine: ${cpu:-unknown CPU}${cpu_id:+ ($cpu_id)}, $cores cores, $isa; OpenBLAS ${blas_pkg:-?} (${blas_lib:-?}; core $blas_core${OPENBLAS_CORETYPE:+, OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE}); $mpi_ver; torch $torch_ver (CPU).
Each row ran daft, then PyTorch, then daft again; the daft figure is the mean of its two runs. ratio = daft / PyTorch img/s
(above 1: daft is faster). \`OPENBLAS_NUM_THREADS\` (and \`OMP_NUM_THREADS\`) equal the thread count of the row for every
process. Peak RSS is GNU \`/usr/bin/time -f %M\` per process: for 2-rank rows the largest rank, for daft the larger of its two runs.
The percent of the sgemm rate and the machine's sgemm scaling come from the yardstick \`daft bench\` samples: one 1024³
single-thread OpenBLAS sgemm per thread and rank, all at once, after every timed step (mean of the two daft runs), i.e.
how fast this host ran sgemm on the row's cores while the row ran, and how much faster two cores ran it than one.

$table"

echo "$block"
if [ "${NO_DOCS:-0}" != 1 ]; then
  BLOCK="$block" "$py" - docs/benchmarks.md <<'EOF' || die "report: could not write docs/benchmarks.md"
import os, sys
BEGIN, END = "<!-- bench-vs-pytorch:begin -->", "<!-- bench-vs-pytorch:end -->"
p = sys.argv[1]
doc = open(p).read()
block = BEGIN + "\n" + os.environ["BLOCK"] + "\n" + END
if BEGIN in doc and END in doc:
    doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
else:
    anchor = "one thread per rank.\n"
    if anchor in doc:
        i = doc.index(anchor) + len(anchor)
        doc = doc[:i] + "\n" + block + "\n" + doc[i:]
    elif "\n## " in doc:
        i = doc.index("\n## ") + 1
        doc = doc[:i] + block + "\n\n" + doc[i:]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
open(p, "w").write(doc)
EOF
  echo "bench-vs-pytorch: wrote the table into docs/benchmarks.md" >&2
fi
