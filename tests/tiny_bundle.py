"""A tiny random AudioLM bundle folder for tests of the shipped-model code paths (pretrained, demo, music), and a
stand-in for the MuLan contract."""

import json
from pathlib import Path

import numpy as np
import torch

SR = 16000
NUM_COARSE = 2
WINDOWS = {"semantic": 0.5, "coarse": 0.3, "fine": 0.2}
Q, C, D = 3, 16, 8


class StandInMuLan(torch.nn.Module):
    """The MuLan contract (`soundlm.music.mulan`) at its smallest: fixed random projections of character and
    audio statistics, L2-normalised, and an RVQ with fixed random codebooks. Not a model of anything."""

    sample_rate = SR
    embed_dim = D
    num_condition_tokens = Q
    condition_codebook_size = C

    def __init__(self, seed: int = 0, num_condition_tokens: int = Q):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.num_condition_tokens = num_condition_tokens
        self.text_proj = torch.nn.Parameter(torch.randn(128, D, generator=g))
        self.audio_proj = torch.nn.Parameter(torch.randn(4, D, generator=g))
        self.codebooks = torch.nn.Parameter(torch.randn(num_condition_tokens, C, D, generator=g) * 0.5)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        counts = torch.zeros(len(texts), 128)
        for i, text in enumerate(texts):
            for ch in text.lower():
                counts[i, ord(ch) % 128] += 1
        return torch.nn.functional.normalize(counts @ self.text_proj, dim=-1)  # [B, D]

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        # Zero crossings per sample (pitch, for tones) on a circle, so nearby pitches still land apart.
        zcr = (audio[:, 1:] * audio[:, :-1] < 0).float().mean(-1) * 200
        stats = torch.stack([zcr.sin(), zcr.cos(), audio.abs().mean(-1) * 10, audio.std(-1) * 10], dim=-1)  # [B, 4]
        return torch.nn.functional.normalize(stats @ self.audio_proj, dim=-1)

    def condition_tokens(self, emb: torch.Tensor) -> torch.Tensor:
        residual, ids = emb, []
        for book in self.codebooks:  # [C, D]
            idx = torch.cdist(residual, book).argmin(dim=-1)  # [B]
            ids.append(idx)
            residual = residual - book[idx]
        return torch.stack(ids, dim=1)  # [B, Q]

    conditions_on_text = False

    def caption_condition(self, captions: list[str]) -> torch.Tensor:
        return self.condition_tokens(self.embed_text(captions))

    def save_pretrained(self, folder) -> None:
        from safetensors.torch import save_model

        folder = Path(folder)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"num_condition_tokens": self.num_condition_tokens}))
        (folder / "tokenizer.json").write_text("{}")
        save_model(self, str(folder / "model.safetensors"))

    @classmethod
    def load(cls, folder, device="cpu") -> "StandInMuLan":
        from safetensors.torch import load_model

        config = json.loads((Path(folder) / "config.json").read_text())
        model = cls(num_condition_tokens=config["num_condition_tokens"])
        load_model(model, str(Path(folder) / "model.safetensors"))
        return model.eval()



def random_codec(sample_rate: int = SR):
    """The tiny codec with random codebooks: an untrained one waits for k-means init with all-zero
    codebooks (every code decodes alike); random codebooks make different codes sound different."""
    from dataclasses import replace

    from soundlm.codec import SoundStreamCodec, codec_16k_tiny

    codec = SoundStreamCodec(replace(codec_16k_tiny(), sample_rate=sample_rate))
    for name, buf in codec.named_buffers():
        if name.endswith(("embed", "embed_avg")):
            buf.normal_()
        elif name.endswith("inited"):
            buf.fill_(True)
    return codec


def make_tiny_bundle(root: Path, phonetic: bool = False, condition: tuple[int, int] | None = None,
                     pattern: str = "flatten", sample_rate: int = SR) -> Path:
    """Random semantic tokenizer, codec and three tiny stage LMs saved as one bundle folder `root/bundle`.

    `phonetic`: the tokenizer's features are a random phonetic encoder (weights in its folder) instead of MFCC.
    `condition` (Q, C): the semantic and coarse stages read Q condition ids of C (MusicLM).
    `pattern` "delay": coarse and fine stages are random DelayLMs; "delay1": one random coarse DelayLM over all the
    codec's codebooks and no fine stage (a one-stage acoustic model).
    `sample_rate`: the codec's (the semantic tokenizer reads 16 kHz, resampled to).
    """
    from soundlm.lm.model import DelayLM, DelayLMConfig, TokenLM, lm_tiny, save_lm
    from soundlm.stages import CONDITIONED_STAGES, delay_prefix_offset, write_stage_files
    from soundlm.pipeline import AudioLMPipeline
    from soundlm.semantic.features import MFCCFeatures
    from soundlm.semantic.tokenizer import KMeansTokenizer
    from soundlm.stages import StageMeta, stage_layout
    from soundlm.store import StoreManifest

    torch.manual_seed(0)
    parts = root / "parts"
    if phonetic:
        from soundlm.semantic.phonetic import PhoneticFeatures

        sem = KMeansTokenizer(PhoneticFeatures("abc ", conv_dim=16, hidden=8, layers=1).eval(), torch.randn(16, 16))
    else:
        sem = KMeansTokenizer(MFCCFeatures(), torch.randn(16, 39))
    sem.save(parts / "semantic_tokenizer")
    codec = random_codec(sample_rate)
    codec.save_pretrained(parts / "codec")
    k = codec.total_codebooks
    tokenizers = StoreManifest.for_tokenizers(sem, codec, semantic_spec=str(parts / "semantic_tokenizer"),
                                              acoustic_spec=str(parts / "codec"))
    one_stage = pattern == "delay1"
    qc = k if one_stage else NUM_COARSE
    stages = {s: w for s, w in WINDOWS.items() if not (one_stage and s == "fine")}
    for stage, window in stages.items():
        q, c = condition if condition is not None and stage in CONDITIONED_STAGES else (0, 0)
        layout = stage_layout(stage, sem.vocab_size, codec.codebook_size, k, qc, condition_size=c)
        delayed = pattern in ("delay", "delay1") and stage != "semantic"
        meta = StageMeta(stage, window, qc, k, sem.frame_rate, codec.frame_rate, tokenizers=tokenizers,
                         pattern="delay" if delayed else "flatten", condition_tokens=q, condition_size=c)
        if delayed:
            own = qc if stage == "coarse" else k - qc
            model = DelayLM(DelayLMConfig(num_codebooks=own, codebook_size=codec.codebook_size,
                                          backbone=lm_tiny(1, max_positions=128),
                                          prefix_vocab_size=delay_prefix_offset(meta, layout) + (c + 1 if q else 0)))
            (parts / stage).mkdir(parents=True)
            write_stage_files(model, parts / stage, meta, layout)
        else:
            save_lm(TokenLM.from_config(lm_tiny(layout.vocab_size, max_positions=128), layout=layout,
                                        meta=meta.to_json()), parts / stage)
    pipe = AudioLMPipeline.from_runs(parts / "semantic", parts / "coarse", None if one_stage else parts / "fine",
                                     device="cpu")
    return pipe.save_bundle(root / "bundle")


def make_tiny_music_bundle(root: Path, pattern: str = "flatten", sample_rate: int = SR) -> Path:
    """A tiny music bundle `root/bundle`: `make_tiny_bundle`'s stages conditioned on Q ids of C, the stand-in MuLan
    as mulan/ (load it with the `stand_in_mulan` fixture of conftest.py)."""
    from soundlm.music.pipeline import MULAN_DIR

    folder = make_tiny_bundle(root, condition=(Q, C), pattern=pattern, sample_rate=sample_rate)
    StandInMuLan().save_pretrained(folder / MULAN_DIR)
    return folder


def tone(seconds: float, freq: float = 220.0, sample_rate: int = SR) -> np.ndarray:
    """A voiced-ish test prompt: a tone with two harmonics and a slow amplitude wobble, [S]."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.25 * wave).astype(np.float32)


def steps_before_first_chunk(pipe, monkeypatch, stream: str = "continue", **kwargs) -> int:
    """Decoding steps (sampled positions, over all stages) a pipeline's stream takes before its first chunk.

    stream "continue": `stream_continue(tone(0.37), include_prompt=False, **kwargs)`; "generate":
    `stream_generate(**kwargs)`.
    """
    import importlib

    # The module, not the function `soundlm.lm.generate` that the package exports under the same name.
    gen_module = importlib.import_module("soundlm.lm.generate")
    steps, sample = [], gen_module.sample_next_token
    monkeypatch.setattr(gen_module, "sample_next_token", lambda *a, **k: steps.append(1) or sample(*a, **k))
    if stream == "continue":
        chunks = pipe.stream_continue(tone(0.37), prompt_sample_rate=SR, include_prompt=False, **kwargs)
    else:
        chunks = pipe.stream_generate(**kwargs)
    next(chunks)
    chunks.close()
    monkeypatch.setattr(gen_module, "sample_next_token", sample)
    return len(steps)
