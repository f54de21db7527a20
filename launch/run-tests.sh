#!/usr/bin/env bash
# The whole test suite (what .ci/run runs): installs, builds, runs every XCTest (MPI tests run for real
# under mpirun with --oversubscribe), then the README main job in its CI-sized form.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install-deps.sh
export OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export DAFT_STALL_TIMEOUT=${DAFT_STALL_TIMEOUT:-300}
swift build --build-tests
swift test --skip-build
bash launch/main-job.sh --quick
