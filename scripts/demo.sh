#!/usr/bin/env bash
# The main job on the embedded default. In this process: prepare the Brown corpus and pretrain the `mini` preset (its
# validation loss against the unigram baseline, the loss chart). On a local Orleans cluster of two silo processes that
# this script starts (`duck cluster up --silos 2`) and stops on exit: fine-tune it on the Duck persona with two worker
# grains (loss on Duck's replies only, some Brown text mixed in; the steps and global batch of `duck finetune`). In this
# process again: export both to packed ternary GGUF files, evaluate the persona on the held-out conversations
# (before/after) and let Duck answer the prototype's 8 prompts from its own weights.
# Re-running it continues interrupted runs from their newest checkpoints: the cluster keeps its job's state in the
# fine-tune's run folder, so a new cluster picks the job up again. DUCK_SILO_PORT, DUCK_GATEWAY_PORT and
# DUCK_HTTP_PORT move the cluster off its default ports (11111, 30000, 8080 and the next one of each).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
duck_dll=src/Coordinator/bin/Release/net10.0/duck.dll
duck() { dotnet "$duck_dll" "$@"; }
has_checkpoint() { [ -d "$1/checkpoints" ] && [ -n "$(ls -A "$1/checkpoints" 2>/dev/null)" ]; }
run=${DUCK_RUN:-runs/mini}
duck_run=${DUCK_PERSONA_RUN:-$run-duck}
silo_port=${DUCK_SILO_PORT:-11111}
gateway_port=${DUCK_GATEWAY_PORT:-30000}
http_port=${DUCK_HTTP_PORT:-8080}
duck data prepare
if has_checkpoint "$run"; then
  duck train --preset mini --out "$run" --resume
else
  duck train --preset mini --out "$run"
fi
duck eval --checkpoint "$run"
duck export --checkpoint "$run" --out "$run/mini.gguf"

mkdir -p "$duck_run"
cluster_log="$duck_run/cluster.log"
dotnet "$duck_dll" cluster up --silos 2 --silo-port "$silo_port" --gateway-port "$gateway_port" --http-port "$http_port" \
  --state "$duck_run/cluster-state" --json >"$cluster_log" 2>&1 &
cluster_pid=$!
stop_cluster() { kill -TERM "$cluster_pid" 2>/dev/null && wait "$cluster_pid" 2>/dev/null || true; }
trap stop_cluster EXIT
for _ in $(seq 1 180); do
  [ "$(grep -c '"gateway"' "$cluster_log" || true)" -ge 2 ] && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$cluster_log" >&2; echo "error: the local cluster did not start (log above)" >&2; exit 1; }
  sleep 1
done
[ "$(grep -c '"gateway"' "$cluster_log" || true)" -ge 2 ] || { cat "$cluster_log" >&2; echo "error: the local cluster was not ready within 180 s" >&2; exit 1; }
echo "local cluster: 2 silos, gateways 127.0.0.1:$gateway_port-$((gateway_port + 1)), training page http://127.0.0.1:$http_port/training"
duck cluster finetune --base "$run" --data persona/duck_personality.jsonl --workers 2 --job mini-duck --out "$duck_run" \
  --gateway "127.0.0.1:$gateway_port"
stop_cluster
trap - EXIT

duck export --checkpoint "$duck_run" --out "$duck_run/duck.gguf"
duck eval persona --model "$duck_run/duck.gguf"
duck test --model "$duck_run/duck.gguf"
echo "loss charts: $run/loss.svg and $duck_run/loss.svg; models: $run/mini.gguf (pretrained) and $duck_run/duck.gguf (Duck; try: duck chat --model $duck_run/duck.gguf)"
