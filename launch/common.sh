# Shared tail of launch/local.sh and launch/hosts.sh (sourced, not run): allow root, print the exact
# mpirun line, then run it (or stop there with --dry-run). Expects `args` (the mpirun command) and `dry`.
prefix=""
if [[ "$(id -u)" -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  prefix="OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
fi
echo "+ ${prefix}OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} $(printf '%q ' "${args[@]}")" >&2
if [[ "$dry" -eq 1 ]]; then exit 0; fi
exec "${args[@]}"
