#!/usr/bin/env bash
# The main job on the embedded default: prepare the Brown corpus, pretrain the `mini` preset in this process (its
# validation loss against the unigram baseline, the loss chart), fine-tune it on the Duck persona (loss on Duck's
# replies only, some Brown text mixed in), export both to packed ternary GGUF files, evaluate the persona on the
# held-out conversations (before/after) and let Duck answer the prototype's 8 prompts from its own weights.
# Re-running it continues interrupted runs from their newest checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
duck() { dotnet src/Coordinator/bin/Release/net10.0/duck.dll "$@"; }
has_checkpoint() { [ -d "$1/checkpoints" ] && [ -n "$(ls -A "$1/checkpoints" 2>/dev/null)" ]; }
run=${DUCK_RUN:-runs/mini}
duck_run=${DUCK_PERSONA_RUN:-$run-duck}
duck data prepare
if has_checkpoint "$run"; then
  duck train --preset mini --out "$run" --resume
else
  duck train --preset mini --out "$run"
fi
duck eval --checkpoint "$run"
duck export --checkpoint "$run" --out "$run/mini.gguf"
if has_checkpoint "$duck_run"; then
  duck finetune --out "$duck_run" --resume
else
  duck finetune --base "$run" --data persona/duck_personality.jsonl --out "$duck_run"
fi
duck export --checkpoint "$duck_run" --out "$duck_run/duck.gguf"
duck eval persona --model "$duck_run/duck.gguf"
duck test --model "$duck_run/duck.gguf"
echo "loss charts: $run/loss.svg and $duck_run/loss.svg; models: $run/mini.gguf (pretrained) and $duck_run/duck.gguf (Duck; try: duck chat --model $duck_run/duck.gguf)"
