#!/usr/bin/env bash
# Data-parallel training across nodes: launch/cluster.sh HOSTFILE NP CONFIG [train flags...]
# HOSTFILE lists nodes as Open MPI expects ("node1 slots=2"). The environment that matters —
# BLAS threads and kernel, the as-root switches — is exported to every rank with -x.
# EMBEDTUNE_BIND_TO replaces the binding policy (default core; "none" where several "nodes" share
# one machine's cores, as in tools/netns-cluster.sh), and EMBEDTUNE_MPIRUN_ARGS adds mpirun options
# (split on spaces), e.g. "--mca btl tcp,self --mca btl_tcp_if_include 10.0.0.0/24".
set -euo pipefail
if [ $# -lt 3 ]; then echo "usage: $0 HOSTFILE NP CONFIG [train flags...]" >&2; exit 2; fi
HOSTFILE=$1; NP=$2; CONFIG=$3; shift 3
cd "$(dirname "$0")/.."
BIN=${EMBEDTUNE_BIN:-$PWD/.build/release/embedtune}
# Threads per rank: cores of a node ÷ ranks on it (slots), unless set by the caller.
SLOTS=$(awk '/slots=/{split($2,a,"="); print a[2]; exit}' "$HOSTFILE")
THREADS=${OPENBLAS_NUM_THREADS:-$(( $(nproc) / ${SLOTS:-1} ))}
[ "$THREADS" -ge 1 ] || THREADS=1
export OPENBLAS_NUM_THREADS=$THREADS
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
read -r -a EXTRA <<< "${EMBEDTUNE_MPIRUN_ARGS:-}"
exec mpirun --hostfile "$HOSTFILE" -np "$NP" --bind-to "${EMBEDTUNE_BIND_TO:-core}" --map-by slot ${EXTRA[@]+"${EXTRA[@]}"} \
  -x OPENBLAS_NUM_THREADS ${OPENBLAS_CORETYPE:+-x OPENBLAS_CORETYPE} -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM \
  "$BIN" train --config "$CONFIG" --threads "$THREADS" "$@"
