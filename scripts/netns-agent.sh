#!/usr/bin/env bash
# Open MPI's plm_rsh_agent for scripts/multihost.sh: where mpirun would `ssh HOST COMMAND` to start
# its daemon on another machine, this runs COMMAND inside the network namespace that HOST's
# address belongs to, with a hostname of its own (a UTS namespace), so the daemon and its ranks
# see a separate machine that they reach only over TCP through the namespaces' veth pairs.
set -euo pipefail
while [[ "${1:-}" == -* ]]; do shift; done   # options an ssh-style caller may pass
host=$1
shift
map=/run/rlhf-multihost/$host
[ -f "$map" ] || { echo "netns-agent: no namespace for host $host (run scripts/multihost.sh setup)" >&2; exit 255; }
ns=$(cat "$map")
# As ssh would, hand the command string to a shell on the "remote" side.
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns && $*"
