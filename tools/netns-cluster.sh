#!/usr/bin/env bash
# The multi-node path on one machine: three "hosts" are network namespaces joined by veth pairs to
# a bridge (itself in a namespace of its own, so the machine's own network is not touched), with
# addresses in 10.213.0.0/24 that exist only inside them. mpirun runs in the first host and starts
# its daemons on the others through tools/netns-rsh (an rsh agent that enters the namespace
# holding the address instead of ssh); ranks talk over Open MPI's TCP transport only.
#
#   1. launch/cluster.sh trains the tiny Qwen3 fixture on 4 ranks over the 3 hosts; the adapter
#      must equal a single-process run of the same configuration (max relative L2 ≤ 1e-5).
#   2. The same run again; once its first checkpoint is in place, one host's link goes down. With
#      --collective_timeout 10 the job must end (mpirun non-zero) within 10 + 60 s. With the link
#      back up, --resume latest on the same cluster must reach the uninterrupted adapter (≤ 1e-5).
#
# Needs root (ip netns) and a release build. Everything it creates is removed on exit; logs and
# outputs stay in out/cluster-check/. Usage: tools/netns-cluster.sh   (or: make cluster-check)
# Knobs: NETNS_PREFIX (et), NETNS_NET (10.213.0), NETNS_TCP_RETRIES2 (5), NETNS_EXTRA (more mpirun
# options, e.g. "--mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "netns-cluster: needs root (ip netns, veth, bridge)" >&2; exit 2; }
BIN=${EMBEDTUNE_BIN:-$ROOT/.build/release/embedtune}
[ -x "$BIN" ] || { echo "netns-cluster: $BIN missing; run swift build -c release" >&2; exit 2; }
for tool in ip unshare mpirun python3; do
  command -v $tool >/dev/null || { echo "netns-cluster: $tool not found" >&2; exit 2; }
done

PREFIX=${NETNS_PREFIX:-et}          # namespaces $PREFIX-sw, $PREFIX-h0 .. $PREFIX-h2
NET=${NETNS_NET:-10.213.0}          # /24, host i gets $NET.(10+i)
HOSTS=3; NP=4                       # slots 2 + 1 + 1: a global batch of 8 splits evenly over 4 ranks
TIMEOUT=10; BOUND=$((TIMEOUT + 60)) # --collective_timeout, and the time mpirun may take to end
CUT=2                               # the host whose link goes down
TOL=1e-5
# How long a host's kernel retransmits to an unanswering peer before the connection fails (per
# namespace; the kernel's default, 15, is ~15 min). mpirun's abort waits on exactly that for the
# daemon behind the cut link (docs/distributed.md); 5 gives up after ~12.6 s.
TCP_RETRIES2=${NETNS_TCP_RETRIES2:-5}
OUT=$ROOT/out/cluster-check
SW=$PREFIX-sw
ns() { echo "$PREFIX-h$1"; }
addr() { echo "$NET.$((10 + $1))"; }
has_ns() { ip netns list | awk '{print $1}' | grep -qx -- "$1"; }

cleanup() {
  local status=$? n pids
  trap - EXIT INT TERM
  for n in $(seq 0 $((HOSTS - 1))) sw; do
    [ "$n" = sw ] && n=$SW || n=$(ns "$n")
    has_ns "$n" || continue
    # Whatever the runs left inside (an orphaned daemon or rank), by process id.
    pids=$(ip netns pids "$n" 2>/dev/null || true)
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true   # its veth ends go with it, the bridge too
  done
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for n in $(seq 0 $((HOSTS - 1))) sw; do
  [ "$n" = sw ] && n=$SW || n=$(ns "$n")
  if has_ns "$n"; then
    echo "netns-cluster: namespace $n exists already (another run, or one that was killed); remove it with: ip netns del $n" >&2
    trap - EXIT; exit 2
  fi
done

## The network: $SW holds bridge br0; host i's veth "eth0" (in $(ns i)) pairs with "p$i" on the bridge.
ip netns add "$SW"
ip -n "$SW" link set lo up
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for i in $(seq 0 $((HOSTS - 1))); do
  h=$(ns $i)
  ip netns add "$h"
  ip link add eth0 netns "$h" type veth peer name "p$i" netns "$SW"
  ip -n "$SW" link set "p$i" master br0 up
  ip -n "$h" link set lo up
  ip netns exec "$h" sysctl -qw net.ipv4.tcp_retries2="$TCP_RETRIES2"
  ip -n "$h" addr add "$(addr $i)/24" dev eth0
  ip -n "$h" link set eth0 up
done
# link_up I: waits until host I's veth carries again (both ends up), at most 5 s.
link_up() {
  for _ in $(seq 50); do
    ip -n "$(ns $1)" -br link show eth0 | grep -q "LOWER_UP" && return 0
    sleep 0.1
  done
  echo "netns-cluster: $(ns $1)'s eth0 does not come up" >&2; return 1
}
for i in $(seq 0 $((HOSTS - 1))); do link_up $i; done
echo "network: $HOSTS hosts $(for i in $(seq 0 $((HOSTS - 1))); do printf '%s=%s ' "$(ns $i)" "$(addr $i)"; done)on bridge br0 in $SW, tcp_retries2 $TCP_RETRIES2"

## The runs' inputs: data as TrainCLITests' tinyDataset (48 rows), a config, a hostfile.
rm -rf "$OUT"; mkdir -p "$OUT"
python3 - "$OUT/data.jsonl" <<'EOF'
import json, sys
crops = ["rice", "wheat", "tea", "apple", "pig", "carp", "cabbage", "maize"]
topics = ["fertiliser", "pests", "irrigation", "harvest", "disease", "pruning"]
with open(sys.argv[1], "w") as f:
    for i in range(48):
        c, t = crops[i % len(crops)], topics[(i // len(crops)) % len(topics)]
        f.write(json.dumps({"query": f"How should I handle {t} for {c}? ({i})",
                            "response": f"For {c}, {t} depends on the season; check it weekly. ({i})",
                            "rejected_response": [f"For {crops[(i + 3) % len(crops)]}, {topics[(i + 1) % len(topics)]} differs. ({i})"]},
                           ensure_ascii=False, separators=(",", ":")) + "\n")
EOF
cat > "$OUT/run.toml" <<EOF
model = "$ROOT/Tests/Fixtures/tiny-qwen3"
dataset = "$OUT/data.jsonl"
EOF
: > "$OUT/hostfile"
for i in $(seq 0 $((HOSTS - 1))); do echo "$(addr $i) slots=$([ $i -eq 0 ] && echo 2 || echo 1)" >> "$OUT/hostfile"; done
PLAN=(--global_batch_size 8 --max_steps 20 --save_steps 4 --threads 1 --lora_r 4 --learning_rate 1e-3
      --collective_timeout "$TIMEOUT")

export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NETNS_RSH_MAP=$(for i in $(seq 0 $((HOSTS - 1))); do printf '%s=%s:%s ' "$(addr $i)" "$(ns $i)" "$(ns $i)"; done)
export NETNS_RSH_MAP
export EMBEDTUNE_BIND_TO=none
export EMBEDTUNE_MPIRUN_ARGS="--mca plm_rsh_agent $ROOT/tools/netns-rsh --mca pml ob1 --mca btl tcp,self
 --mca btl_tcp_if_include $NET.0/24 --mca oob_tcp_if_include $NET.0/24 ${NETNS_EXTRA:-}"
EMBEDTUNE_MPIRUN_ARGS=${EMBEDTUNE_MPIRUN_ARGS//$'\n'/}

# cluster OUTPUT_DIR [flags]: launch/cluster.sh from host 0, which is named like its namespace.
cluster() {
  local dir=$1; shift
  ip netns exec "$(ns 0)" unshare --uts sh -c 'hostname "$1"; shift; exec "$@"' - "$(ns 0)" \
    launch/cluster.sh "$OUT/hostfile" "$NP" "$OUT/run.toml" "${PLAN[@]}" --output_dir "$dir" "$@"
}
distance() { python3 tools/adapter_distance.py "$1" "$2"; }
within() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }
failed=0

## 1. Four ranks on three hosts against one process.
echo "run 1: $NP ranks on $HOSTS hosts (launch/cluster.sh), then one process"
start=$(date +%s.%N)
if ! cluster "$OUT/cluster" > "$OUT/cluster.log" 2>&1; then
  echo "netns-cluster: the cluster run failed; last lines of $OUT/cluster.log:" >&2; tail -20 "$OUT/cluster.log" >&2; exit 1
fi
cluster_s=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
start=$(date +%s.%N)
"$BIN" train --config "$OUT/run.toml" "${PLAN[@]}" --output_dir "$OUT/single" > "$OUT/single.log" 2>&1 ||
  { echo "netns-cluster: the single-process run failed; see $OUT/single.log" >&2; tail -20 "$OUT/single.log" >&2; exit 1; }
single_s=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
d1=$(distance "$OUT/single" "$OUT/cluster")
if within "$d1" $TOL; then eq1=yes; else eq1=no; failed=1; fi
echo "  cluster ${cluster_s} s, single process ${single_s} s, adapter distance $d1 (≤ $TOL: $eq1)"

## 2. A link goes down after the first checkpoint; the job must end within the bound.
echo "run 2: the same, $(ns $CUT)'s link down once checkpoint-4 is in place (collective_timeout $TIMEOUT s)"
cut_dir=$OUT/cut
cluster "$cut_dir" > "$OUT/cut.log" 2>&1 &
job=$!
for _ in $(seq 1200); do [ -d "$cut_dir/checkpoint-4" ] || ! kill -0 $job 2>/dev/null && break; sleep 0.1; done
if [ ! -d "$cut_dir/checkpoint-4" ]; then
  echo "netns-cluster: no checkpoint-4 from run 2; see $OUT/cut.log" >&2; tail -20 "$OUT/cut.log" >&2; exit 1
fi
ip -n "$(ns $CUT)" link set eth0 down
down_at=$(date +%s.%N)
ended=""
for _ in $(seq $((BOUND * 10))); do kill -0 $job 2>/dev/null || { ended=1; break; }; sleep 0.1; done
end_s=$(python3 -c "import time; print(f'{time.time() - $down_at:.1f}')")
if [ -n "$ended" ]; then
  set +e; wait $job; rc=$?; set -e
else
  rc=timeout
  kill -TERM $job 2>/dev/null || true; sleep 2; kill -9 $job 2>/dev/null || true
fi
ip -n "$(ns $CUT)" link set eth0 up
if [ "$rc" != timeout ] && [ "$rc" -ne 0 ]; then ended2=yes; else ended2=no; failed=1; fi
last=$(ls -d "$cut_dir"/checkpoint-* 2>/dev/null | sed 's/.*checkpoint-//' | sort -n | tail -1)
echo "  mpirun ended: $ended2 (status $rc) ${end_s} s after the link went down (bound $BOUND s); last checkpoint: ${last:-none}"
grep -h "collective_timeout" "$OUT/cut.log" | head -3 | sed 's/^/  | /' || true
# Anything of that job still alive in the hosts (a daemon that never heard the end) goes now.
left=""
for i in $(seq 0 $((HOSTS - 1))); do
  pids=$(ip netns pids "$(ns $i)" 2>/dev/null || true)
  [ -z "$pids" ] || { left="$left $(ns $i):$(ps -o comm= -p "$(echo $pids | tr ' ' ,)" | tr '\n' ,)"; kill -9 $pids 2>/dev/null || true; }
done
[ -z "$left" ] || echo "  processes left behind and killed:$left"
link_up $CUT

## 3. Resume on the same cluster, link up, to the end.
if [ -f "$cut_dir/adapter_model.safetensors" ]; then
  echo "netns-cluster: run 2 finished before the link went down; nothing was interrupted" >&2; failed=1; eq3=no; d3=-
elif cluster "$cut_dir" --resume latest > "$OUT/resume.log" 2>&1; then
  d3=$(distance "$OUT/cluster" "$cut_dir")
  if within "$d3" $TOL; then eq3=yes; else eq3=no; failed=1; fi
  from=$(grep -o "resumed from[^,;]*" "$OUT/resume.log" | head -1 || true)
  echo "  resume: ${from:-resumed}; adapter distance to run 1 $d3 (≤ $TOL: $eq3)"
else
  echo "netns-cluster: the resumed run failed; last lines of $OUT/resume.log:" >&2; tail -20 "$OUT/resume.log" >&2
  eq3=no; d3=-; failed=1
fi

echo
echo "cluster-check report ($HOSTS hosts, $NP ranks, TCP over veth; logs in $OUT)"
echo "  cluster = one process (≤ $TOL):        $eq1  (max relative L2 $d1)"
echo "  job ended after link down (≤ $BOUND s): $ended2  (${end_s} s, mpirun status $rc)"
echo "  resumed = uninterrupted (≤ $TOL):       $eq3  (max relative L2 $d3)"
[ $failed -eq 0 ] && echo "cluster-check: passed" || echo "cluster-check: FAILED"
exit $failed
