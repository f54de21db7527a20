#!/usr/bin/env bash
# K "hosts" on this machine, each a network namespace with its own address, joined by a bridge, so
# `mpirun --hostfile` talks real TCP between them (no external network is touched).
#
#   cluster/netns.sh up 2            # namespaces daft-h1..daft-h2 at 10.231.0.11.., bridge daftbr0 at 10.231.0.1
#   cluster/netns.sh hostfile        # print the hostfile (one slot per host)
#   cluster/netns.sh run -n 2 -- .build/release/daft-transport scenario allreduce
#   cluster/netns.sh down            # remove namespaces, bridge and the map file
#
# `run` calls launch/hosts.sh with the hostfile, --tcp, the subnet (MPI and ORTE traffic) and
# cluster/netns-rsh as OpenMPI's remote shell agent. Needs root and iproute2.
# Environment (for a second, independent set, e.g. in tests): DAFT_NETNS_PREFIX (daft-h), DAFT_NETNS_BRIDGE
# (daftbr0), DAFT_NETNS_NET (10.231.0), DAFT_NETNS_VETH (dn), DAFT_NETNS_STATE (/run/daft-netns).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${DAFT_NETNS_PREFIX:-daft-h}"
bridge="${DAFT_NETNS_BRIDGE:-daftbr0}"
net="${DAFT_NETNS_NET:-10.231.0}"
subnet="$net.0/24"
veth="${DAFT_NETNS_VETH:-dn}"
statedir="${DAFT_NETNS_STATE:-/run/daft-netns}"
map="$statedir/hosts"
export DAFT_NETNS_MAP="$map"   # read by netns-rsh

die() { echo "netns.sh: $*" >&2; exit 1; }
need_root() { [[ "$(id -u)" -eq 0 ]] || die "must run as root"; command -v ip >/dev/null || die "iproute2 (ip) not found"; }

up() {
  local k="$1"
  [[ "$k" =~ ^[0-9]+$ && "$k" -ge 1 && "$k" -le 200 ]] || die "up K: K must be 1..200"
  need_root
  down quiet
  mkdir -p "$statedir"
  : > "$map"
  ip link add "$bridge" type bridge
  ip addr add "$net.1/24" dev "$bridge"
  ip link set "$bridge" up
  for i in $(seq 1 "$k"); do
    local ns="$prefix$i" addr="$net.$((10 + i))"
    ip netns add "$ns"
    ip link add "${veth}v$i" type veth peer name "${veth}p$i"
    ip link set "${veth}p$i" netns "$ns"
    ip -n "$ns" link set "${veth}p$i" name eth0
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip link set "${veth}v$i" master "$bridge"
    ip link set "${veth}v$i" up
    echo "$addr $ns" >> "$map"
  done
  # Bridged traffic stays local; make sure a host firewall (br_netfilter + FORWARD DROP) does not eat it.
  if [[ -r /proc/sys/net/bridge/bridge-nf-call-iptables ]] && command -v iptables >/dev/null; then
    iptables -C FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null || iptables -I FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
  fi
  echo "netns.sh: $k hosts up on $subnet (bridge $bridge at $net.1):" >&2
  cat "$map" >&2
}

down() {
  local quiet="${1:-}"
  [[ "$(id -u)" -eq 0 ]] || die "must run as root"
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix[0-9]\+$" || true); do
    ip netns del "$ns"
  done
  if ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge"; fi
  if command -v iptables >/dev/null; then iptables -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null || true; fi
  rm -f "$map"
  [[ -n "$quiet" ]] || echo "netns.sh: down" >&2
}

hostfile() {
  [[ -r "$map" ]] || die "no hosts (run: netns.sh up K)"
  awk '{ print $1 " slots=1" }' "$map"
}

run() {
  [[ -r "$map" ]] || die "no hosts (run: netns.sh up K)"
  mkdir -p "$statedir"
  hostfile > "$statedir/hostfile"
  exec "$here/../launch/hosts.sh" --hostfile "$statedir/hostfile" --tcp --if "$subnet" --rsh "$here/netns-rsh" \
    --mca orte_keep_fqdn_hostnames 1 "$@"
}

case "${1:-}" in
  up) [[ $# -eq 2 ]] || die "usage: netns.sh up K"; up "$2" ;;
  down) down ;;
  hostfile) hostfile ;;
  run) shift; run "$@" ;;
  *) sed -n "2,15p" "$0"; exit 2 ;;
esac
