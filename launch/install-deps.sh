#!/usr/bin/env bash
# Installs the Debian packages daft needs (OpenBLAS, OpenMPI, Fashion-MNIST, zlib, libpng, libjpeg-turbo, iproute2
# for the network-namespace cluster test, chromium for the headless-browser test of `daft report`, slurm-wlm and
# munge for the one-node Slurm of EndToEndSlurmTests / cluster/slurm-local.sh). Swift 6 must already be on PATH (it
# is on the project's machines).
set -euo pipefail
packages=(libopenblas-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist zlib1g-dev libpng-dev libjpeg62-turbo-dev iproute2 procps chromium slurm-wlm munge)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${packages[@]}"
fi
command -v swift >/dev/null || { echo "install-deps: swift is not on PATH (Swift 6.x toolchain needed)" >&2; exit 1; }
