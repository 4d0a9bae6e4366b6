#!/usr/bin/env bash
# The main job on the embedded default: prepare the Brown corpus, train the `mini` preset in this process, show
# the result (validation loss against the unigram baseline, the loss chart, an evaluation of the checkpoint), then
# export the checkpoint to a packed ternary GGUF file and let the model answer the prototype's 8 prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
duck() { dotnet src/Coordinator/bin/Release/net10.0/duck.dll "$@"; }
run=${DUCK_RUN:-runs/mini}
duck data prepare
if [ -d "$run/checkpoints" ] && [ -n "$(ls -A "$run/checkpoints" 2>/dev/null)" ]; then
  duck train --preset mini --out "$run" --resume
else
  duck train --preset mini --out "$run"
fi
duck eval --checkpoint "$run"
duck export --checkpoint "$run" --out "$run/mini.gguf"
# A pretrained-only mini model continues text; it has not been taught to chat yet (the persona fine-tuning does that).
duck test --model "$run/mini.gguf"
echo "loss chart: $run/loss.svg; model file: $run/mini.gguf (try: duck chat --model $run/mini.gguf)"
