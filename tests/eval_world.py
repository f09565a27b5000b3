"""A tiny random AudioLM bundle, a two-voice espeak-ng corpus and its token store, for the eval tests."""

from pathlib import Path

import torch

SR = 16000
WINDOWS = {"semantic": 0.3, "coarse": 0.16, "fine": 0.1}
NUM_COARSE = 2
SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "we like green apples",
             "the sun is very warm", "my brother reads books"]
VOICES = {"alice": "en-us", "bob": "en-gb+m3"}


def make_eval_world(root: Path) -> dict[str, Path]:
    """A bundle (tiny random stages, MFCC tokenizer, tiny codec), a corpus and its token store."""
    from soundlm.audio import save_audio
    from soundlm.codec import SoundStreamCodec, codec_16k_tiny
    from soundlm.data import write_manifest
    from soundlm.eval.tts import synthesize
    from soundlm.lm.model import TokenLM, lm_tiny
    from soundlm.pipeline import AudioLMPipeline
    from soundlm.semantic.features import MFCCFeatures
    from soundlm.semantic.tokenizer import KMeansTokenizer
    from soundlm.tokenize import TokenizeConfig, tokenize_corpus
    from soundlm.stages import Stage, StageMeta, stage_layout

    torch.manual_seed(0)
    sem = KMeansTokenizer(MFCCFeatures(), torch.randn(16, 39))
    codec = SoundStreamCodec(codec_16k_tiny())
    for name, buf in codec.named_buffers():  # random codebooks: different codes decode differently
        if name.endswith(("embed", "embed_avg")):
            buf.normal_()
        elif name.endswith("inited"):
            buf.fill_(True)
    k = codec.total_codebooks
    stages = []
    for stage, window in WINDOWS.items():
        layout = stage_layout(stage, sem.vocab_size, codec.codebook_size, k, NUM_COARSE)
        meta = StageMeta(stage, window, NUM_COARSE, k, sem.frame_rate, codec.frame_rate)
        model = TokenLM.from_config(lm_tiny(layout.vocab_size, max_positions=128), layout=layout,
                                    meta=meta.to_json())
        stages.append(Stage(model=model, meta=meta, layout=layout, folder=root))
    bundle = AudioLMPipeline(sem, codec, *stages, device="cpu").save_bundle(root / "bundle")

    corpus = root / "corpus"
    rows = []
    for spk, voice in VOICES.items():
        for i, text in enumerate(SENTENCES[:3] if spk == "alice" else SENTENCES[2:]):
            rel = f"wav/{spk}_{i}.wav"
            audio = synthesize(text, voice=voice, sample_rate=SR)
            save_audio(corpus / rel, audio, SR)
            rows.append({"id": f"{spk}_{i}", "path": rel, "duration": len(audio) / SR, "sample_rate": SR,
                         "speaker": spk, "language": "en", "transcript": text, "split": "heldout"})
    audio = synthesize(SENTENCES[4], voice="en-us+f3", sample_rate=SR)
    save_audio(corpus / "wav/carol_0.wav", audio, SR)
    rows.append({"id": "carol_0", "path": "wav/carol_0.wav", "duration": len(audio) / SR, "sample_rate": SR,
                 "speaker": "carol", "language": "en", "transcript": SENTENCES[4], "split": "train"})
    write_manifest(corpus, rows)
    store = root / "store"
    tokenize_corpus(TokenizeConfig(source=str(corpus), out=str(store), semantic=str(bundle / "semantic_tokenizer"),
                                   codec=str(bundle / "codec"), batch_size=4, workers=0, device="cpu"),
                    progress=False)
    return {"root": root, "bundle": bundle, "corpus": corpus, "store": store}
