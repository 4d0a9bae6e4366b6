#!/usr/bin/env bash
# Issue 5's scaling target on this machine: aggregate tokens/s of 16 concurrent chat sessions against one session's.
# Runs ROUNDS rounds of `duck bench serve` at 1 and at 16 sessions, each run on a fresh one-silo local cluster (the
# embedded default), the order reversed every other round; prints every round and the ratio of the means, the reading
# docs/benchmarks.md reports (single rounds move by a third with the VM's state; only means over rounds say anything).
# Usage: scripts/serve-ratio.sh MODEL.gguf [ROUNDS=6] [more `duck bench serve` options, e.g. --max-tokens 32]
# About 1 min per run (start, 10 s warm-up, 20 s measured), so 12 min for 6 rounds; run it alone on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/serve-ratio.sh MODEL.gguf [ROUNDS] [bench serve options]" >&2; exit 2; }
[ -f "$1" ] || { echo "error: no model file at $1" >&2; exit 2; }
MODEL=$1; ROUNDS=${2:-6}; shift $(( $# >= 2 ? 2 : 1 ))
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "error: ROUNDS must be a whole number of at least 1, got '$ROUNDS'" >&2; exit 2; }
dotnet build src/Silo -c Release -v q -nologo >/dev/null
dotnet build src/Coordinator -c Release -v q -nologo >/dev/null
DUCK="dotnet src/Coordinator/bin/Release/net10.0/duck.dll"
WORK=$(mktemp -d /tmp/duck-serve-ratio-XXXX)
UP=
# SIGTERM, not SIGINT: a background job of a non-interactive shell ignores SIGINT. `cluster up` stops its silos on either.
stop() { if [ -n "$UP" ]; then kill -TERM "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; UP=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT
$DUCK cluster deploy "$MODEL" --name bench --models "$WORK/models" >/dev/null

# One run: a fresh silo, `bench serve` for 20 s after 10 s of warm-up, then the silo stopped; prints tokens_per_s.
run() {
    rm -rf "$WORK/state"
    $DUCK cluster up --silos 1 --silo-port 21911 --gateway-port 31900 --http-port 18980 --state "$WORK/state" \
        --models "$WORK/models" >"$WORK/up.log" 2>&1 &
    UP=$!
    for _ in $(seq 1 120); do grep -q "cluster up" "$WORK/up.log" && break; sleep 1; done
    grep -q "cluster up" "$WORK/up.log" || { echo "error: the cluster did not come up:" >&2; cat "$WORK/up.log" >&2; exit 1; }
    $DUCK bench serve --url http://127.0.0.1:18980 --model bench --sessions "$1" --seconds 20 --warmup 10 --json "${@:2}" >"$WORK/bench.json"
    stop
    grep -o '"errors":[0-9]*' "$WORK/bench.json" | grep -q '"errors":0$' || echo "warning: errors in a run: $(cat "$WORK/bench.json")" >&2
    grep -o '"tokens_per_s":[0-9.]*' "$WORK/bench.json" | cut -d: -f2
}

sum1=0; sum16=0
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then one=$(run 1 "$@"); many=$(run 16 "$@"); else many=$(run 16 "$@"); one=$(run 1 "$@"); fi
    echo "round $r: 1 session $one tok/s, 16 sessions $many tok/s, $(awk -v a="$one" -v b="$many" 'BEGIN { printf "%.2f", b / a }')x"
    sum1=$(awk -v s="$sum1" -v x="$one" 'BEGIN { print s + x }'); sum16=$(awk -v s="$sum16" -v x="$many" 'BEGIN { print s + x }')
done
awk -v a="$sum1" -v b="$sum16" -v n="$ROUNDS" \
    'BEGIN { printf "means over %d rounds: 1 session %.1f tok/s, 16 sessions %.1f tok/s, ratio of means %.2fx\n", n, a / n, b / n, b / a }'
