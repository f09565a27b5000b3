"""Built-in phonetic features: the encoder of a small CTC recogniser trained on the corpus.

MFCC k-means ids say who speaks nearly as well as what is said (on the speech-tiny corpus a
classifier names the voice from an utterance's MFCC-unit histogram 88% of the time among 48
voices, `soundlm eval units`), so an AudioLM semantic stage over them carries the voice and
the acoustic prompt has nothing left to decide. AudioLM avoids this with w2v-BERT units;
without a pretrained checkpoint we train the content encoder ourselves. A bidirectional GRU
over MFCCs learns, by spelling the transcripts with CTC across many voices (and
speed-perturbed copies, which move formants and pitch), what is said and not who says it;
k-means over its hidden states gives the semantic ids. This is the "supervised semantic
tokens" route of CosyVoice's S3 tokenizer at toy scale.

Audio [B, 1, S] at 16 kHz -> MFCC [B, T, 39] at 50 Hz -> two convolutions (the first with
stride 2: 25 Hz) -> bidirectional GRU -> hidden [B, ceil(T / 2), 2 * hidden], each frame
repeated twice and cut to T, so features stay at 50 Hz with T = floor(S / 320) like MFCC.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from soundlm.devices import default_device
from soundlm.fileio import atomic_path, read_json, write_json_atomic
from soundlm.semantic.features import FeatureExtractor, MFCCFeatures

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "phonetic.safetensors"
ENCODER_TYPE = "soundlm-phonetic-encoder"


def normalize_transcript(text: str, alphabet: str | None = None) -> str:
    """Lower-case letters, digits, apostrophes and single spaces; with `alphabet`, only its characters."""
    kept = "".join(c if (c.isalnum() or c == "'") else " " for c in text.lower())
    if alphabet is not None:
        kept = "".join(c if c in alphabet else " " for c in kept)
    return " ".join(kept.split())


class PhoneticFeatures(FeatureExtractor):
    """MFCC -> conv -> BiGRU hidden states at 50 Hz; `ctc_logits` spells the alphabet (blank = 0)."""

    def __init__(self, alphabet: str, conv_dim: int = 256, hidden: int = 192, layers: int = 2):
        super().__init__()
        if not alphabet or len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet must be non-empty with distinct characters, got {alphabet!r}")
        self.alphabet = alphabet
        self.conv_dim, self.hidden, self.layers = conv_dim, hidden, layers
        self.mfcc = MFCCFeatures()
        # Global MFCC statistics of the training corpus (set by training, saved with the weights).
        self.register_buffer("feat_mean", torch.zeros(self.mfcc.dim))
        self.register_buffer("feat_std", torch.ones(self.mfcc.dim))
        self.conv = nn.Sequential(
            nn.Conv1d(self.mfcc.dim, conv_dim, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(conv_dim, conv_dim, 3, padding=1), nn.GELU())
        self.rnn = nn.GRU(conv_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, len(alphabet) + 1)

    @property
    def sample_rate(self) -> int:
        return self.mfcc.sample_rate

    @property
    def hop_length(self) -> int:
        return self.mfcc.hop_length

    @property
    def dim(self) -> int:
        return 2 * self.hidden

    @property
    def min_samples(self) -> int:
        return self.mfcc.min_samples

    def num_frames(self, num_samples: int) -> int:
        return self.mfcc.num_frames(num_samples)

    @staticmethod
    def ctc_frames(mfcc_frames: torch.Tensor | int) -> torch.Tensor | int:
        """CTC output frames (25 Hz) for a number of MFCC frames (50 Hz)."""
        return (mfcc_frames + 1) // 2

    def encode_mfcc(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC [B, T, 39] -> hidden [B, ceil(T / 2), 2 * hidden] at 25 Hz."""
        x = (mfcc - self.feat_mean) / self.feat_std
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # [B, T', conv_dim]
        hid, _ = self.rnn(x)  # [B, T', 2 * hidden]
        return hid

    def ctc_logits(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC [B, T, 39] -> CTC logits [B, ceil(T / 2), len(alphabet) + 1]."""
        return self.head(self.encode_mfcc(mfcc))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mfcc = self.mfcc(audio)  # [B, T, 39]
        hid = self.encode_mfcc(mfcc)  # [B, ceil(T / 2), D]
        return hid.repeat_interleave(2, dim=1)[:, : mfcc.shape[1]].float()  # [B, T, D]

    def transcribe(self, audio: torch.Tensor) -> list[str]:
        """Greedy CTC decoding of audio [B, 1, S] (for checking what the encoder learnt)."""
        with torch.inference_mode():
            best = self.ctc_logits(self.mfcc(audio)).argmax(-1)  # [B, T']
        return [ctc_greedy(row.tolist(), self.alphabet) for row in best]

    def arch(self) -> dict:
        return {"alphabet": self.alphabet, "conv_dim": self.conv_dim, "hidden": self.hidden, "layers": self.layers}

    def describe(self) -> dict:
        return {"kind": "phonetic", **self.arch(), "weights": WEIGHTS_NAME}

    def save_weights(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(folder / WEIGHTS_NAME, suffix=".safetensors") as tmp:
            save_file(state, str(tmp))
        return folder / WEIGHTS_NAME

    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write the encoder on its own (`PhoneticFeatures.load(folder)`); the config goes last."""
        self.save_weights(folder)
        write_json_atomic(Path(folder) / CONFIG_NAME, {"type": ENCODER_TYPE, **self.arch(), **(extra or {})})
        return Path(folder)

    def load_weights(self, path: str | Path) -> "PhoneticFeatures":
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; the phonetic encoder's weights must sit beside its config")
        state = load_file(str(path))
        # A half-precision bundle stores floats as float16; load_state_dict copies them into float32.
        self.load_state_dict(state)
        return self

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = None) -> "PhoneticFeatures":
        """Load an encoder folder written by `soundlm train phonetic` (or `save`)."""
        folder = Path(folder)
        config_path = folder / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; pass a folder written by `soundlm train phonetic`")
        cfg = read_json(config_path)
        if cfg.get("type") != ENCODER_TYPE:
            raise ValueError(f"{config_path}: type is {cfg.get('type')!r}, not {ENCODER_TYPE!r}; "
                             "this folder is not a phonetic encoder")
        return phonetic_from_config(cfg, folder, device)


def phonetic_from_config(config: dict, folder: str | Path | None,
                         device: str | torch.device | None = None) -> PhoneticFeatures:
    """Rebuild the extractor a tokenizer config describes; its weights sit in `folder`."""
    if folder is None:
        raise ValueError("phonetic features keep their weights in the tokenizer folder; load them with "
                         "soundlm.semantic.load_semantic_tokenizer(folder)")
    fx = PhoneticFeatures(config["alphabet"], int(config["conv_dim"]), int(config["hidden"]), int(config["layers"]))
    fx.load_weights(Path(folder) / config.get("weights", WEIGHTS_NAME))
    return fx.eval().to(default_device(device))


def ctc_greedy(ids: list[int], alphabet: str) -> str:
    """Collapse repeats, drop blanks (0), map ids to characters."""
    out, prev = [], 0
    for i in ids:
        if i != prev and i != 0:
            out.append(alphabet[i - 1])
        prev = i
    return "".join(out)
