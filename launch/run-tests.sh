#!/usr/bin/env bash
# The whole test suite (what .ci/run runs): installs, builds, runs every XCTest (MPI tests run for real
# under mpirun with --oversubscribe; the heavy end-to-end runs use the release binaries through
# DAFT_BIN_DIR), a short libFuzzer run of every parser (launch/fuzz.sh), then the README main job in its
# CI-sized form. The Python environment the PyTorch comparisons need (launch/python-env.sh) installs in the
# background while Swift builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install-deps.sh
export OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export DAFT_STALL_TIMEOUT=${DAFT_STALL_TIMEOUT:-300}
mkdir -p .build
bash launch/python-env.sh > .build/python-env.out 2> .build/python-env.log &
venv_pid=$!
swift build -c release
swift build --build-tests
if wait "$venv_pid"; then
  export DAFT_PYTHON=$(cat .build/python-env.out)
else
  echo "run-tests: the Python environment did not install (.build/python-env.log); PyTorch comparisons will fail" >&2
  tail -5 .build/python-env.log >&2
fi
DAFT_BIN_DIR=$PWD/.build/release swift test --skip-build
# Coverage-guided fuzzing, short: each parser's libFuzzer target for 5 s after replaying the crash inputs kept in
# Fuzz/regressions (sanitizer build in .build-fuzz; the long runs and their numbers are in docs/reliability.md).
bash launch/fuzz.sh all 5
bash launch/main-job.sh --quick
