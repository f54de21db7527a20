#!/usr/bin/env bash
# Coverage-guided fuzzing of daft's file parsers with libFuzzer (Swift's -sanitize=fuzzer,address).
#
#   bash launch/fuzz.sh TARGET [SECONDS]      TARGET: safetensors npy idx idxgz image config manifest
#                                             trainer-state, or all (one after another); SECONDS per target
#                                             (default 60)
#
# Builds the target (DAFT_FUZZ=1 adds the Fuzz/Sources/fuzz-* executables to Package.swift; debug build, every
# Swift module instrumented, in .build-fuzz), replays the kept crash inputs Fuzz/regressions/TARGET/*, then
# fuzzes for SECONDS from the committed seeds Fuzz/corpus/TARGET/ into a fresh working corpus
# .build-fuzz/corpus/TARGET/, and prints libFuzzer's final numbers. A crash, a failed check in the target, a
# sanitizer report, a timeout (>10 s for one input), an allocation over 2 GB or RSS over 2 GB is a failure:
# the script exits non-zero and the input stays in .build-fuzz/artifacts/TARGET/. The full libFuzzer log is
# .build-fuzz/logs/TARGET.log. Extra libFuzzer flags can be given in FUZZ_FLAGS (e.g. FUZZ_FLAGS=-runs=1000000).
# Installs nothing beyond launch/install-deps.sh (Swift's toolchain ships libFuzzer and the sanitizers).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(safetensors npy idx idxgz image config manifest trainer-state)
usage="usage: launch/fuzz.sh TARGET [SECONDS] (TARGET: ${targets[*]} or all)"
[[ $# -ge 1 && $# -le 2 ]] || { echo "$usage" >&2; exit 2; }
seconds=${2:-60}
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz: SECONDS must be a positive integer, got '$seconds'" >&2; exit 2; }
if [[ "$1" == all ]]; then
  selected=("${targets[@]}")
else
  [[ " ${targets[*]} " == *" $1 "* ]] || { echo "fuzz: unknown target '$1'; $usage" >&2; exit 2; }
  selected=("$1")
fi

scratch=.build-fuzz
build() {
  local product=fuzz-$1 log=$scratch/logs/build-$1.log
  mkdir -p "$scratch/logs"
  # ld.gold warns once per ASan helper symbol ("Cannot export local symbol"); the log keeps them.
  if ! DAFT_FUZZ=1 swift build -c debug --scratch-path "$scratch" --product "$product" \
      -Xswiftc -sanitize=fuzzer,address > "$log" 2>&1; then
    grep -v "Cannot export local symbol" "$log" | tail -30 >&2
    echo "fuzz: building $product failed (full log: $log)" >&2
    exit 1
  fi
  grep -E "^Build (of product .*)?complete" "$log" || true
}

# Swift's own crash backtracer would run inside ASan's signal handling; libFuzzer's stack trace is enough.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0:handle_abort=1}
symbolizer=$(dirname "$(command -v swift)")/llvm-symbolizer
[[ -x "$symbolizer" ]] && export ASAN_SYMBOLIZER_PATH=$symbolizer

status=0
for t in "${selected[@]}"; do
  build "$t"
  bin=$scratch/debug/fuzz-$t
  seeds=Fuzz/corpus/$t
  work=$scratch/corpus/$t
  artifacts=$scratch/artifacts/$t
  log=$scratch/logs/$t.log
  [[ -d "$seeds" ]] || { echo "fuzz: no seed corpus $seeds" >&2; exit 1; }
  rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  limits=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10)
  regressions=(Fuzz/regressions/"$t"/*)
  if [[ -e "${regressions[0]}" ]]; then
    if ! "$bin" "${limits[@]}" "${regressions[@]}" > "$scratch/logs/$t-regressions.log" 2>&1; then
      grep -E "ERROR|Fatal error|Precondition|SUMMARY|Running:" "$scratch/logs/$t-regressions.log" | tail -20 >&2
      echo "fuzz $t: a kept crash input of Fuzz/regressions/$t fails again (log: $scratch/logs/$t-regressions.log)" >&2
      status=1
      continue
    fi
    echo "fuzz $t: ${#regressions[@]} kept crash input(s) of Fuzz/regressions/$t replayed, no failure"
  fi
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086
  "$bin" "${limits[@]}" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts/" \
    ${FUZZ_FLAGS:-} "$work" "$seeds" > "$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  units=$(find "$work" -type f | wc -l)
  bytes=$(du -sb "$work" | cut -f1)
  if [[ $rc -ne 0 ]]; then
    grep -E "ERROR: |Fatal error|Precondition failed|SUMMARY|Test unit written|Slowest unit" "$log" | head -20 >&2
    echo "fuzz $t: FAILED (libFuzzer exit $rc after ${elapsed} s; input kept in $artifacts/, log $log)" >&2
    status=1
    continue
  fi
  echo "fuzz $t: ${execs:-?} executions in ${elapsed} s (${rate:-?} exec/s), cov: ${cov:-?} ft: ${ft:-?}," \
       "corpus ${units} units (${bytes} bytes), peak RSS ${rss:-?} MB, no crash"
done
exit $status
