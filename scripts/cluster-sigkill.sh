#!/usr/bin/env bash
# Real silo processes on loopback: starts a 3-silo local cluster, trains a tiny job, SIGKILLs a non-primary silo
# mid-job and requires the job to complete anyway. Exits non-zero when it does not. Usage: scripts/cluster-sigkill.sh
# About 2.5-3.5 min on 2 busy cores (the silos start one after another; a step of tiny with the full vocabulary takes
# 2-4 s), hence not part of CI; docs/benchmarks.md has a measured run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f data/brown/data.json ] || { echo "error: no prepared data in data/brown; run \`duck data prepare\` (or scripts/demo.sh) first" >&2; exit 1; }
dotnet build src/Silo -v q -nologo >/dev/null
dotnet build src/Coordinator -v q -nologo >/dev/null
DUCK=src/Coordinator/bin/Debug/net10.0/duck
WORK=$(mktemp -d /tmp/duck-sigkill-XXXX)
JOB="sigkill-$(date +%s)"
"$DUCK" cluster up --silos 3 --silo-port 13111 --gateway-port 32000 --http-port 8280 --state "$WORK/state" --json >"$WORK/up.jsonl" 2>"$WORK/up.err" &
UP=$!
trap 'kill $UP 2>/dev/null || true; wait $UP 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do [ "$(grep -c '"gateway"' "$WORK/up.jsonl" || true)" -ge 3 ] && break; sleep 1; done
[ "$(grep -c '"gateway"' "$WORK/up.jsonl")" -ge 3 ] || { echo "cluster did not come up"; cat "$WORK/up.err"; exit 1; }
VICTIM=$(grep '"silo":2' "$WORK/up.jsonl" | sed 's/.*"pid":\([0-9]*\).*/\1/')
"$DUCK" cluster train --preset tiny --workers 2 --steps 16 --batch-size 4 --seq-len 32 --checkpoint-every 4 \
    --gateway 127.0.0.1:32000 --job "$JOB" --json >"$WORK/train.jsonl" &
TRAIN=$!
for _ in $(seq 1 300); do grep -q '"step":5,' "$WORK/train.jsonl" 2>/dev/null && break; sleep 1; done
echo "killing silo pid $VICTIM (SIGKILL) after: $(tail -1 "$WORK/train.jsonl")"
kill -9 "$VICTIM"
wait $TRAIN || true
tail -3 "$WORK/train.jsonl"
grep -q '"state":"completed"' "$WORK/train.jsonl" && echo "PASS: job completed after SIGKILL" || { echo "FAIL"; exit 1; }
