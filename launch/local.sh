#!/usr/bin/env bash
# Data-parallel training on one node: launch/local.sh NP CONFIG [extra embedtune train flags...]
# Each of the NP ranks gets cores ÷ NP OpenBLAS threads and its own core(s); the OpenBLAS kernel
# is chosen by the binary itself (see docs/performance.md) unless OPENBLAS_CORETYPE is set.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 NP CONFIG [train flags...]" >&2; exit 2; fi
NP=$1; CONFIG=$2; shift 2
cd "$(dirname "$0")/.."
BIN=${EMBEDTUNE_BIN:-.build/release/embedtune}
CORES=$(nproc)
THREADS=$(( CORES / NP )); [ "$THREADS" -ge 1 ] || THREADS=1
EXTRA=()
[ "$NP" -gt "$CORES" ] && EXTRA+=(--oversubscribe)
# mpirun refuses root unless told; CI and containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun -np "$NP" "${EXTRA[@]}" --bind-to "$([ "$NP" -le "$CORES" ] && echo core || echo none)" \
  -x OPENBLAS_NUM_THREADS="$THREADS" ${OPENBLAS_CORETYPE:+-x OPENBLAS_CORETYPE} \
  "$BIN" train --config "$CONFIG" --threads "$THREADS" "$@"
