#!/usr/bin/env bash
# AudioPaLM at toy scale, end to end on CPU: a bilingual (en, fr) synthetic corpus, MFCC
# k-means semantic tokens, a tiny text LM, then the text-init vs scratch ablation (same
# steps, batch, lr, seed) evaluated on held-out voices. Every step resumes when rerun.
#
#   bash recipes/palm_tiny.sh                # everything under work_palm/
#   W=/tmp/palm STEPS=300 bash recipes/palm_tiny.sh
#
# Results: $W/eval_text/report.md, $W/eval_scratch/report.md, $W/eval_voice/report.md (voice
# transfer) and the wavs under $W/demo/ (docs/RESULTS.md, section 2).
#
# Audio output (issue 5: TTS and S2ST with voice transfer) needs a real codec: CODEC_AC=FOLDER
# copies an exported codec (config.json + model.safetensors, e.g. the speech-tiny recipe's
# work/speech-tiny/codec/final); without it one is trained here on the bilingual corpus with the
# settings of the first speech-tiny codec (preset small, CODEC_STEPS steps), which docs/RESULTS.md
# section 2 used; the shipped speech-tiny codec is now preset fast.
set -euo pipefail

W=${W:-work_palm}
SOUNDLM=${SOUNDLM:-soundlm}
PYTHON=${PYTHON:-python}
HOURS=${HOURS:-0.5}
STEPS=${STEPS:-1000}
TEXT_STEPS=${TEXT_STEPS:-1000}
EVAL_N=${EVAL_N:-30}
CODEC_AC=${CODEC_AC:-}
CODEC_STEPS=${CODEC_STEPS:-2000}
AC_STEPS=${AC_STEPS:-550}        # coarse and fine AudioLM stages (about 7 min each on one core)
SEM_STEPS=${SEM_STEPS:-300}      # the AudioLM semantic stage (only completes the bundle: the palm
                                 # model writes the semantic ids for TTS/S2ST)
VOICE_N=${VOICE_N:-10}
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
# real AudioLM bundle, see docs/RESULTS.md, section 2): a tiny codec trained for a few steps is enough.
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

# --- Audio output: the AudioLM acoustic stages on the same semantic tokens + a real codec ----------
if [[ ! -f "$W/codec_ac/config.json" ]]; then
    if [[ -n "$CODEC_AC" ]]; then
        mkdir -p "$W/codec_ac.tmp" && cp "$CODEC_AC/config.json" "$CODEC_AC/model.safetensors" "$W/codec_ac.tmp/"
        mv "$W/codec_ac.tmp" "$W/codec_ac"
    else
        timed codec_ac "$SOUNDLM" train codec "$W/corpus" --out "$W/codec_ac_run" --preset small --steps "$CODEC_STEPS" \
            --batch-size 8 --lr 5e-4 --no-adversarial --num-workers 0
        cp -r "$W/codec_ac_run/final" "$W/codec_ac"
    fi
fi
timed tokenize_ac "$SOUNDLM" tokenize "$W/corpus" --out "$W/store_ac" --semantic "$W/semantic" --codec "$W/codec_ac" \
    --workers 0 --no-progress
LM_ARGS=(--preset mini --batch-size 8 --lr 1e-3 --warmup 50 --log-every 10)
timed lm_semantic "$SOUNDLM" train lm "$W/store_ac" --stage semantic --out "$W/lm_semantic" "${LM_ARGS[@]}" \
    --steps "$SEM_STEPS" --window-seconds 4 --ckpt-every "$SEM_STEPS" --eval-every "$SEM_STEPS"
timed lm_coarse "$SOUNDLM" train lm "$W/store_ac" --stage coarse --coarse-codebooks 3 --out "$W/lm_coarse" \
    "${LM_ARGS[@]}" --steps "$AC_STEPS" --window-seconds 2 --ckpt-every 275 --eval-every 275
timed lm_fine "$SOUNDLM" train lm "$W/store_ac" --stage fine --coarse-codebooks 3 --out "$W/lm_fine" \
    "${LM_ARGS[@]}" --steps "$AC_STEPS" --window-seconds 1 --ckpt-every 275 --eval-every 275
if [[ ! -d "$W/audiolm_bundle" ]]; then
    "$PYTHON" - "$W" <<'PY'
import sys
from soundlm.pipeline import AudioLMPipeline

w = sys.argv[1]
pipe = AudioLMPipeline.from_runs(f"{w}/lm_semantic", f"{w}/lm_coarse", f"{w}/lm_fine",
                                 semantic_tokenizer=f"{w}/semantic", codec=f"{w}/codec_ac", device="cpu")
print("bundle:", pipe.save_bundle(f"{w}/audiolm_bundle"))
PY
fi

# End to end on held-out voices (unseen in every training step above).
mkdir -p "$W/demo"
EN_WAV=$W/corpus/wavs/en-h00/000001-en.wav   # "The baker is in the house."
FR_WAV=$W/corpus/wavs/fr-h00/000008-fr.wav   # "L'homme et le professeur mangent."
timed demo_tts "$SOUNDLM" tts "The tired girl sleeps." --language en --model "$W/palm_text" \
    --audiolm "$W/audiolm_bundle" --out "$W/demo/tts_en.wav" --out-tokens "$W/demo/tts_en.npy"
"$SOUNDLM" tts "The tired girl sleeps." --language en --model "$W/palm_text" --audiolm "$W/audiolm_bundle" \
    --voice "$EN_WAV" --out "$W/demo/tts_en_voice_en-h00.wav"
timed demo_s2st "$SOUNDLM" translate "$EN_WAV" --from en --to fr --speech --model "$W/palm_text" \
    --audiolm "$W/audiolm_bundle" --out "$W/demo/s2st_en-h00_to_fr.wav" --out-tokens "$W/demo/s2st_en-h00_to_fr.npy"
"$SOUNDLM" translate "$FR_WAV" --from fr --to en --speech --model "$W/palm_text" --audiolm "$W/audiolm_bundle" \
    --out "$W/demo/s2st_fr-h00_to_en.wav"
# Round trip: the palm model's own ASR on the rendered audio (re-tokenized from the wav).
for f in tts_en:en tts_en_voice_en-h00:en s2st_en-h00_to_fr:fr s2st_fr-h00_to_en:en; do
    echo "ASR of $W/demo/${f%%:*}.wav: $("$SOUNDLM" asr "$W/demo/${f%%:*}.wav" --model "$W/palm_text" --language "${f##*:}")"
done | tee "$W/demo/asr_roundtrip.txt"
# Voice transfer: S2ST rendered with the source recording as the acoustic prompt, Resemblyzer
# similarity to the source speaker vs the other speakers.
timed eval_voice "$SOUNDLM" eval palm --model "$W/palm_text" --store "$W/store_ac" \
    --manifest "$W/corpus/manifest.jsonl" --split heldout --tasks s2st --max-examples "$VOICE_N" \
    --audiolm "$W/audiolm_bundle" --voice-examples "$VOICE_N" --no-progress --out "$W/eval_voice"
cat "$W/times.tsv"
