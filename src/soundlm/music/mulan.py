"""A MuLan-style joint music-text embedding (Huang et al. 2022), small enough to train on CPU.

Two towers map a music clip and a caption into one L2-normalised space where matching pairs
score high (cosine), trained with the symmetric InfoNCE loss over a batch and a learned
temperature (`soundlm train mulan`, `train/mulan.py`):

- audio tower: log-mel (timbre, loudness) and semitone-spaced log bands (pitch, hence key: a
  64-band mel scale is coarser than a semitone below 1 kHz) -> a 1-D conv net that downsamples
  50 -> 12.5 frames per second -> a small transformer -> mean pool -> projection;
- text tower: a `tokenizers` tokenizer (a BPE trained on the training captions, or a Hugging
  Face tokenizer folder) -> a small transformer -> masked mean pool -> projection.

MusicLM conditions its LMs on discrete ids of this embedding: `condition_tokens` is a
residual vector quantizer (Q levels of C codes) k-means-fitted on training audio embeddings
after training (`fit_condition_quantizer`), audio embeddings at training time, text at
inference. Besides, `frechet_distance` measures two sets of embeddings against each other.

A model folder (`save_pretrained`, `load_mulan`): config.json (`{"type": "mulan", "config":
MuLanConfig}`), model.safetensors (weights and the quantizer's codebooks), tokenizer.json.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from soundlm.fileio import atomic_dir, read_json, write_json_atomic

MODEL_TYPE = "mulan"
TOKENIZER_FILE = "tokenizer.json"
PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"
# A Hugging Face tokenizer folder without tokenizer.json has one of these (transformers makes the fast twin).
_SLOW_TOKENIZER_FILES = ("tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
_FIX = "pass a folder written by `soundlm train mulan` (RUN or RUN/final) or by MuLan.save_pretrained"


CONDITION_SOURCES = ("audio", "text")  # MuLanConfig.condition_from


@dataclass
class MuLanConfig:
    sample_rate: int = 16_000
    clip_seconds: float = 5.0  # the audio tower's window; longer audio is the mean over windows
    n_mels: int = 64
    n_fft: int = 2048  # 128 ms: resolves semitones down to about 150 Hz
    hop_length: int = 320  # 50 frames per second
    semitone_low: int = 43  # MIDI G2, 98 Hz
    semitone_high: int = 103  # MIDI G7, 3136 Hz (exclusive)
    audio_channels: int = 128
    width: int = 128  # both transformers
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    embed_dim: int = 128
    vocab_size: int = 0  # the tokenizer's
    pad_id: int = 0
    max_text_tokens: int = 64
    # The condition quantizer: Q levels of C codes (MusicLM: 12 x 1024 on millions of clips; here
    # a few hundred clips, so few codes per level keep tens of training embeddings per centroid).
    condition_levels: int = 4
    condition_codes: int = 64
    quantizer_fitted: bool = False
    # What the stages' condition ids are. "audio": MusicLM's, the quantized audio embedding of a training
    # recording and the quantized text embedding of a caption at inference. "text": the caption's own tokens
    # (the text tower's tokenizer, `condition_text_tokens` ids padded with pad_id) at training and inference,
    # for a corpus whose recordings all have captions; the "or on text embeddings directly".
    condition_from: str = "audio"
    condition_text_tokens: int = 24

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> MuLanConfig:
        return cls(**obj)

    def validate(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1 (the tokenizer's), got {self.vocab_size}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        if self.condition_levels < 1 or self.condition_codes < 2:
            raise ValueError(f"the condition quantizer needs >= 1 level of >= 2 codes, got "
                             f"{self.condition_levels} x {self.condition_codes}")
        if self.condition_from not in CONDITION_SOURCES:
            raise ValueError(f"condition_from must be {' or '.join(CONDITION_SOURCES)}, got {self.condition_from!r}")
        if self.condition_text_tokens < 1:
            raise ValueError(f"condition_text_tokens must be >= 1, got {self.condition_text_tokens}")
        if self.clip_seconds * self.sample_rate < self.n_fft:
            raise ValueError(f"clip_seconds {self.clip_seconds} is shorter than one analysis window")


# ------------------------------------------------------------------------------------ front end

def semitone_filterbank(low: int, high: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """Triangular filters centred on the equal-tempered pitches MIDI low..high-1, [F, high - low].

    Each reaches zero at its neighbours' centres, so a bin's weight falls with its distance in
    semitones; bins too coarse for a pitch fall back to the nearest bin (never an empty band).
    """
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    midi = 69 + 12 * torch.log2(freqs.clamp(min=1e-3) / 440.0)  # [F]
    centres = torch.arange(low, high, dtype=torch.float64)  # [P]
    fb = (1 - (midi[:, None] - centres).abs()).clamp(min=0)  # [F, P]
    nearest = (freqs[:, None] - 440.0 * 2 ** ((centres - 69) / 12)).abs().argmin(dim=0)  # [P]
    empty = fb.sum(dim=0) == 0
    fb[nearest[empty], empty.nonzero().flatten()] = 1.0
    return fb.float()


class MusicFrontEnd(nn.Module):
    """Audio [B, S] -> log energies [B, T, n_mels + semitones], T = S // hop_length.

    No level normalisation: loudness is one of the attributes captions name.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, semitone_low: int,
                 semitone_high: int):
        super().__init__()
        from soundlm.semantic.features import mel_filterbank

        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = torch.cat([mel_filterbank(n_mels, n_fft, sample_rate),
                        semitone_filterbank(semitone_low, semitone_high, n_fft, sample_rate)], dim=1)
        self.register_buffer("fb", fb, persistent=False)  # [F, n_mels + semitones]

    @property
    def dim(self) -> int:
        return self.fb.shape[1]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        pad = (self.n_fft - self.hop_length) // 2
        x = nn.functional.pad(audio, (pad, pad + self.hop_length))
        frames = x.unfold(-1, self.n_fft, self.hop_length)[:, : audio.shape[-1] // self.hop_length]  # [B, T, n_fft]
        spec = torch.fft.rfft(frames * self.window).abs().pow(2)  # [B, T, F]
        return torch.log(spec @ self.fb + 1e-6)  # [B, T, bands]


# ------------------------------------------------------------------------------------ towers

def _encoder(width: int, layers: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class AudioTower(nn.Module):
    """Front-end frames [B, T, bands] -> pooled features [B, width]."""

    def __init__(self, bands: int, channels: int, width: int, layers: int, heads: int, dropout: float):
        super().__init__()
        # A learned per-band scale and offset (running statistics), not a per-clip one: the level stays.
        self.norm = nn.BatchNorm1d(bands)
        self.conv = nn.Sequential(
            nn.Conv1d(bands, channels, 5, padding=2), nn.GELU(),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(channels, width, 5, stride=2, padding=2), nn.GELU())
        self.encoder = _encoder(width, layers, heads, dropout)
        self.out_norm = nn.LayerNorm(width)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.norm(frames.transpose(1, 2)))  # [B, width, T / 4]
        h = self.encoder(h.transpose(1, 2))  # [B, T / 4, width]
        return self.out_norm(h.mean(dim=1))  # [B, width]


class TextTower(nn.Module):
    """Token ids [B, L] + mask [B, L] (True on tokens) -> pooled features [B, width]."""

    def __init__(self, vocab_size: int, max_tokens: int, width: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(max_tokens, width)
        self.encoder = _encoder(width, layers, heads, dropout)
        self.out_norm = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))  # [B, L, width]
        h = self.encoder(h, src_key_padding_mask=~mask)
        m = mask.unsqueeze(-1).to(h.dtype)  # [B, L, 1]
        return self.out_norm((h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1))  # [B, width]


# ------------------------------------------------------------------------------------ the model

class MuLan(nn.Module):
    """Joint music-text embedding; the MuLan <-> MusicLM contract (see the module doc)."""

    def __init__(self, config: MuLanConfig, tokenizer):
        super().__init__()
        config.validate()
        self.config, self.tokenizer = config, tokenizer
        c = config
        self.front_end = MusicFrontEnd(c.sample_rate, c.n_fft, c.hop_length, c.n_mels, c.semitone_low,
                                       c.semitone_high)
        self.audio_tower = AudioTower(self.front_end.dim, c.audio_channels, c.width, c.layers, c.heads, c.dropout)
        self.text_tower = TextTower(c.vocab_size, c.max_text_tokens, c.width, c.layers, c.heads, c.dropout)
        self.audio_proj = nn.Linear(c.width, c.embed_dim)
        self.text_proj = nn.Linear(c.width, c.embed_dim)
        # CLIP's initial temperature 0.07; the scale is capped at 100 in `logit_scale`.
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.register_buffer("codebooks", torch.zeros(c.condition_levels, c.condition_codes, c.embed_dim))

    # ---- the contract
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def conditions_on_text(self) -> bool:
        """Whether the stages read the caption's own tokens (`condition_from` "text"), not quantized embeddings."""
        return self.config.condition_from == "text"

    @property
    def num_condition_tokens(self) -> int:
        return self.config.condition_text_tokens if self.conditions_on_text else self.config.condition_levels

    @property
    def condition_codebook_size(self) -> int:
        return self.config.vocab_size if self.conditions_on_text else self.config.condition_codes

    @property
    def clip_samples(self) -> int:
        return int(round(self.config.clip_seconds * self.config.sample_rate))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Mono audio [B, N] at `sample_rate` -> [B, D], L2-normalised.

        Audio longer than `clip_seconds` is cut into windows (the last one ending at the end, when
        at least half a window is left over) whose embeddings are averaged, then normalised again.
        """
        if audio.dim() == 3 and audio.shape[1] == 1:
            audio = audio[:, 0]
        if audio.dim() != 2:
            raise ValueError(f"embed_audio takes mono audio [B, N], got shape {tuple(audio.shape)}")
        n, clip = audio.shape[1], self.clip_samples
        if n < self.config.n_fft:
            raise ValueError(f"audio of {n} samples is shorter than one analysis window ({self.config.n_fft}); "
                             f"pass at least {self.config.n_fft / self.sample_rate:.2f} s")
        device = self.codebooks.device
        if n <= clip:
            return self.audio_embedding(self.front_end(audio.to(device, torch.float32)))
        starts = list(range(0, n - clip + 1, clip))
        if n - (starts[-1] + clip) >= clip // 2:
            starts.append(n - clip)
        windows = torch.stack([audio[:, s: s + clip] for s in starts], dim=1)  # [B, W, clip]
        b, w = windows.shape[:2]
        emb = self.audio_embedding(self.front_end(windows.reshape(b * w, clip).to(device, torch.float32)))
        return nn.functional.normalize(emb.view(b, w, -1).mean(dim=1), dim=-1)  # [B, D]

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Captions -> [B, D], L2-normalised."""
        ids, mask = self.tokenize(texts)
        return self.text_embedding(ids, mask)

    def condition_tokens(self, emb: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, D] -> LongTensor [B, Q] in [0, C): residual VQ, each level the nearest code."""
        if not self.config.quantizer_fitted:
            raise ValueError("this MuLan's condition quantizer is not fitted; fit it with "
                             "`fit_condition_quantizer` (`soundlm train mulan` does at the end of a run)")
        if emb.dim() != 2 or emb.shape[1] != self.embed_dim:
            raise ValueError(f"condition_tokens takes embeddings [B, {self.embed_dim}], got {tuple(emb.shape)}")
        residual = emb.to(self.codebooks.device, torch.float32)
        ids = []
        for codebook in self.codebooks:  # [C, D]
            # argmin takes the first of equal distances: the same input always gives the same ids.
            idx = torch.cdist(residual, codebook, compute_mode="donot_use_mm_for_euclid_dist").argmin(dim=1)  # [B]
            residual = residual - codebook[idx]
            ids.append(idx)
        return torch.stack(ids, dim=1)  # [B, Q]

    def caption_condition(self, captions: list[str]) -> torch.Tensor:
        """Captions -> the condition ids [B, Q] in [0, C) the stages read for them: the caption's tokens
        (`conditions_on_text`), else the quantized text embedding (MusicLM)."""
        if not self.conditions_on_text:
            return self.condition_tokens(self.embed_text(captions)).long()
        ids, _ = self.tokenize(captions)  # [B, L], pad_id after each caption
        q = self.config.condition_text_tokens
        out = torch.full((ids.shape[0], q), self.config.pad_id, dtype=torch.long, device=ids.device)
        out[:, : min(q, ids.shape[1])] = ids[:, :q]
        return out

    def condition_on_text(self, tokens: int = MuLanConfig.condition_text_tokens) -> MuLan:
        """Make the condition ids the caption's first `tokens` tokens (in place; returns self): stages trained on
        a store tokenized with this MuLan read captions, not quantized embeddings (`caption_condition`)."""
        self.config.condition_from, self.config.condition_text_tokens = "text", tokens
        self.config.validate()
        return self

    def keep_condition_levels(self, levels: int) -> MuLan:
        """Keep the first `levels` RVQ levels of the condition quantizer (in place; returns self).

        Residual quantization makes level l's id independent of the levels after it, so the kept ids
        are exactly the first `levels` columns of the full `condition_tokens`."""
        have = self.config.condition_levels
        if not 1 <= levels <= have:
            raise ValueError(f"this MuLan quantizes conditions with {have} levels; keep 1 to {have}, got {levels}")
        self.codebooks = self.codebooks[:levels].clone()  # [levels, C, D]
        self.config.condition_levels = levels
        return self

    def save_pretrained(self, folder: str | Path) -> Path:
        """config.json + model.safetensors + tokenizer.json, written as a whole (atomic folder)."""
        with atomic_dir(folder) as tmp:
            self.write_files(tmp)
        return Path(folder)

    # ---- training and internals
    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> ids [B, L] and mask [B, L] (True on tokens), cut at `max_text_tokens`."""
        if isinstance(texts, str) or not texts:
            raise ValueError("embed_text takes a non-empty list of captions")
        limit = self.config.max_text_tokens
        encoded = [self.tokenizer.encode(t).ids[:limit] or [self.config.pad_id] for t in texts]
        length = max(len(e) for e in encoded)
        ids = torch.full((len(texts), length), self.config.pad_id, dtype=torch.long)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e)
            mask[i, : len(e)] = True
        device = self.codebooks.device
        return ids.to(device), mask.to(device)

    def audio_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """Front-end frames [B, T, bands] -> [B, D], L2-normalised (the trainer crops frames, not audio)."""
        return nn.functional.normalize(self.audio_proj(self.audio_tower(frames)), dim=-1)

    def text_embedding(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.text_proj(self.text_tower(ids, mask)), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    def contrastive_loss(self, audio_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE of matched rows [B, D] x [B, D]: audio->text and text->audio cross-entropy."""
        logits = self.logit_scale() * audio_emb @ text_emb.t()  # [B, B]
        target = torch.arange(logits.shape[0], device=logits.device)
        return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.t(), target)) / 2

    def fit_condition_quantizer(self, embeddings: torch.Tensor, seed: int = 0, max_iter: int = 50) -> None:
        """k-means each RVQ level on the residuals of `embeddings` [N, D] (training audio embeddings)."""
        from soundlm.semantic.kmeans import assign, fit_kmeans

        q, c = self.config.condition_levels, self.config.condition_codes
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embed_dim or embeddings.shape[0] < c:
            raise ValueError(f"the condition quantizer needs >= {c} embeddings [N, {self.embed_dim}] to fit "
                             f"{c} codes per level, got {tuple(embeddings.shape)}; embed more clips or pass "
                             "fewer codes")
        residual = embeddings.detach().float().cpu()
        books = []
        for level in range(q):
            fit = fit_kmeans(residual, c, max_iter=max_iter, seed=seed + level, device="cpu")
            books.append(fit.centroids)
            residual = residual - fit.centroids[assign(residual, fit.centroids).ids]
        self.codebooks.copy_(torch.stack(books))  # [Q, C, D]
        self.config.quantizer_fitted = True

    def write_files(self, folder: Path) -> None:
        """The model folder's files into `folder` (a checkpoint or export being written)."""
        from safetensors.torch import save_file

        write_json_atomic(folder / "config.json", {"type": MODEL_TYPE, "config": self.config.to_json()})
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(folder / "model.safetensors"))
        self.tokenizer.save(str(folder / TOKENIZER_FILE))


# ------------------------------------------------------------------------------------ tokenizers

def train_caption_tokenizer(captions: list[str], vocab_size: int = 512):
    """A lower-casing BPE tokenizer (`tokenizers`) learnt from `captions`; [PAD] is id 0."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(captions, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD_TOKEN, UNK_TOKEN],
                                                          show_progress=False))
    return tok


def load_text_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from tokenizer.json, or from a Hugging Face tokenizer folder."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if file.is_file():
        return Tokenizer.from_file(str(file))
    if path.is_dir() and any((path / name).is_file() for name in _SLOW_TOKENIZER_FILES):
        try:  # a folder with only a slow tokenizer's files (vocab.txt, ...): its fast twin
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(str(path), use_fast=True).backend_tokenizer
        except Exception as e:
            raise ValueError(f"{path}: no tokenizer.json and transformers could not load a fast tokenizer from "
                             f"it ({type(e).__name__}); pass a tokenizer.json or a Hugging Face tokenizer "
                             "folder") from None
    if path.is_dir():
        raise ValueError(f"{path}: no tokenizer.json, tokenizer_config.json or vocabulary file; pass a "
                         "tokenizer.json or a Hugging Face tokenizer folder")
    raise FileNotFoundError(f"{path}: no such tokenizer file or folder; pass a tokenizer.json or a Hugging Face "
                            "tokenizer folder")


def tokenizer_pad_id(tokenizer) -> int:
    """The id padding uses: the tokenizer's [PAD] (or <pad>), else 0 (padded positions are masked anyway)."""
    for name in (PAD_TOKEN, "<pad>"):
        found = tokenizer.token_to_id(name)
        if found is not None:
            return int(found)
    return 0


# ------------------------------------------------------------------------------------ loading

def load_mulan(path_or_hub_id: str | Path, device: str | torch.device = "cpu") -> MuLan:
    """A MuLan from its folder (RUN or RUN/final of `soundlm train mulan`), or a hub id through huggingface_hub."""
    from safetensors.torch import load_file

    from soundlm.pretrained import is_hub_id, resolve_model

    text = str(path_or_hub_id)
    if not Path(text).exists() and not is_hub_id(text):
        raise FileNotFoundError(f"{text}: no such MuLan folder; {_FIX}")
    folder = resolve_model(text)
    if (folder / "final" / "config.json").is_file():
        folder = folder / "final"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; {_FIX}")
    meta = read_json(config_path)
    if not isinstance(meta, dict) or meta.get("type") != MODEL_TYPE:
        got = meta.get("type") if isinstance(meta, dict) else None
        raise ValueError(f"{config_path}: type {got!r} is not a MuLan ({MODEL_TYPE!r}); {_FIX}")
    for name in ("model.safetensors", TOKENIZER_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: no {name}; the folder is incomplete, {_FIX}")
    model = MuLan(MuLanConfig.from_json(meta["config"]), load_text_tokenizer(folder / TOKENIZER_FILE))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.to(device).eval()


# ------------------------------------------------------------------------------------ metrics

def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to rows of a [N, D] and b [M, D].

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)). As in the FID/FAD code, a singular
    product (fewer rows than dimensions) gets `eps` added to both diagonals, and the imaginary
    part rounding leaves in the square root is dropped.
    """
    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance takes [N, D] and [M, D] with the same D, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"frechet_distance needs >= 2 rows on each side to fit a covariance, got "
                         f"{a.shape[0]} and {b.shape[0]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(s_a.shape[0]) * eps
        covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))
