#!/usr/bin/env bash
# AudioPaLM at toy scale, end to end on CPU: a bilingual (en, fr) synthetic corpus, MFCC
# k-means semantic tokens, a tiny text LM, then the text-init vs scratch ablation (same
# steps, batch, lr, seed) evaluated on held-out voices. Every step resumes when rerun.
#
#   bash recipes/palm_tiny.sh                # everything under work_palm/
#   W=/tmp/palm STEPS=300 bash recipes/palm_tiny.sh
#
# Results: $W/eval_text/report.md, $W/eval_scratch/report.md (docs/RESULTS_PALM.md).
set -euo pipefail

W=${W:-work_palm}
SOUNDLM=${SOUNDLM:-soundlm}
HOURS=${HOURS:-0.5}
STEPS=${STEPS:-1000}
TEXT_STEPS=${TEXT_STEPS:-1000}
EVAL_N=${EVAL_N:-30}
TASKS=${TASKS:-asr,ast,asr_ast,tts,s2st}
# One thread per process: on a small shared CPU box, torch's default (all cores) made the
# text LM ~10x slower under load (oversubscription). Raise it on a dedicated machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$W"

timed() {  # timed NAME cmd...: run a step and append its wall time to $W/times.tsv
    local name=$1 start
    shift
    start=$(date +%s)
    "$@"
    echo -e "$name\t$(( $(date +%s) - start ))" >> "$W/times.tsv"
}

timed data "$SOUNDLM" data speech --out "$W/corpus" --hours "$HOURS" --languages en,fr --voices 4 \
    --heldout-voices 1 --workers 2
timed semantic "$SOUNDLM" train semantic "$W/corpus" --out "$W/semantic" --features mfcc --clusters 150 \
    --max-frames 100000
# The acoustic codes only fill the store's acoustic column (voice prompts for S2ST audio need a
# real AudioLM bundle, see docs/RESULTS_PALM.md): a tiny codec trained for a few steps is enough.
timed codec "$SOUNDLM" train codec "$W/corpus" --out "$W/codec" --preset tiny --steps 3 --batch-size 2 \
    --no-adversarial --ckpt-every 3 --eval-every 3 --sample-every 1000 --num-workers 0
timed tokenize "$SOUNDLM" tokenize "$W/corpus" --out "$W/store" --semantic "$W/semantic" --codec "$W/codec/final" \
    --workers 0 --no-progress
timed textlm "$SOUNDLM" train textlm --out "$W/textlm" --languages en,fr --sentences 4000 --vocab-size 600 \
    --hidden-size 128 --layers 4 --heads 4 --steps "$TEXT_STEPS" --batch-size 32 --lr 2e-3 --ckpt-every 200

# The ablation: identical settings, only --scratch differs.
PALM_ARGS=(--store "$W/store" --init "$W/textlm" --tasks "$TASKS" --steps "$STEPS" --batch-size 16 --lr 1e-3
           --warmup 100 --ckpt-every 250 --seed 0)
timed palm_text "$SOUNDLM" train palm "${PALM_ARGS[@]}" --out "$W/palm_text"
timed palm_scratch "$SOUNDLM" train palm "${PALM_ARGS[@]}" --scratch --out "$W/palm_scratch"

for run in text scratch; do
    timed "eval_$run" "$SOUNDLM" eval palm --model "$W/palm_$run" --store "$W/store" \
        --manifest "$W/corpus/manifest.jsonl" --split heldout --max-examples "$EVAL_N" --out "$W/eval_$run"
    # The text-output tasks are cheap to decode: score them on every held-out utterance.
    timed "eval_${run}_text_full" "$SOUNDLM" eval palm --model "$W/palm_$run" --store "$W/store" \
        --manifest "$W/corpus/manifest.jsonl" --split heldout --tasks asr,ast,asr_ast --max-examples 0 \
        --out "$W/eval_${run}_text_full"
done
cat "$W/times.tsv"
