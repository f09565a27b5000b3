"""Share models like the Hugging Face ecosystem: `save_pretrained` writes a bundle, `push_to_hub` uploads one.

A soundlm model folder (loaded back by `soundlm.from_pretrained(folder or hub id)`):

    config.json                       `BundleConfig`: format, version, parts, rates, codebooks
    README.md                         the model card (`soundlm.model_card`)
    semantic/ coarse/ fine/           the stage LMs (config.json + model.safetensors each)
    semantic_tokenizer/ codec/        the tokenizers
    recipe.json, eval.json, ...       what the card was made from, when the model has them

An adapter bundle (`soundlm finetune --save adapters`) is shared the same way: adapters.json,
one PEFT adapter folder per stage and its card; it names the base it applies to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soundlm.fileio import atomic_dir, read_json, write_json_atomic, write_text_atomic
from soundlm.model_card import CARD_NAME, ModelCard, card_for_bundle

if TYPE_CHECKING:
    from soundlm.pipeline import AudioLMPipeline

BUNDLE_FORMAT = "soundlm-audiolm"
# Files besides the parts that a saved bundle carries over from the folder it was loaded from.
RECORDS = ("recipe.json", "eval.json", "EVAL.md", "finetune.json")


@dataclass(frozen=True)
class BundleConfig:
    """config.json at the top of a bundle: what the folder holds, readable without loading a model."""

    sample_rate: int
    semantic_frame_rate: float
    acoustic_frame_rate: float
    semantic_vocab_size: int
    num_codebooks: int
    coarse_codebooks: int
    codebook_size: int
    parts: tuple[str, ...] = ("semantic", "coarse", "fine", "semantic_tokenizer", "codec")
    version: int = 1

    def to_json(self) -> dict:
        from soundlm import __version__

        return {"format": BUNDLE_FORMAT, "version": self.version, "library": "soundlm", "library_version": __version__,
                "parts": list(self.parts), "sample_rate": self.sample_rate,
                "semantic_frame_rate": self.semantic_frame_rate, "acoustic_frame_rate": self.acoustic_frame_rate,
                "semantic_vocab_size": self.semantic_vocab_size, "num_codebooks": self.num_codebooks,
                "coarse_codebooks": self.coarse_codebooks, "codebook_size": self.codebook_size}

    @classmethod
    def from_json(cls, data: dict, where: str | Path) -> "BundleConfig":
        if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"{where}: not a soundlm bundle config (format {BUNDLE_FORMAT!r}); save the model with "
                             "soundlm.save_pretrained")
        keys = ("sample_rate", "semantic_frame_rate", "acoustic_frame_rate", "semantic_vocab_size", "num_codebooks",
                "coarse_codebooks", "codebook_size")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"{where}: bundle config lacks {missing}; save the model again with save_pretrained")
        return cls(**{k: data[k] for k in keys}, parts=tuple(data.get("parts") or cls.parts),
                   version=int(data.get("version", 1)))

    @classmethod
    def of(cls, pipe: AudioLMPipeline) -> "BundleConfig":
        return cls(sample_rate=int(pipe.sample_rate), semantic_frame_rate=float(pipe.semantic.meta.semantic_rate),
                   acoustic_frame_rate=float(pipe.coarse.meta.acoustic_rate),
                   semantic_vocab_size=int(pipe.semantic.layout.semantic_size), num_codebooks=int(pipe.num_codebooks),
                   coarse_codebooks=int(pipe.num_coarse), codebook_size=int(pipe.coarse.layout.codebook_size),
                   parts=(*(s.name for s in pipe.stages), "semantic_tokenizer", "codec"))


def save_pretrained(pipe: AudioLMPipeline, folder: str | Path, card: ModelCard | None = None,
                    records_from: str | Path | None = None, name: str | None = None) -> Path:
    """Write `pipe` as a bundle folder (atomically): the parts, config.json and a README.md model card.

    records_from: a folder whose recipe.json / eval.json / finetune.json are copied along (the
    card is made from them when `card` is None); name: the model's name in the card.
    """
    import shutil

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        pipe.save_bundle(tmp)
        write_json_atomic(tmp / "config.json", BundleConfig.of(pipe).to_json())
        if records_from is not None:
            for record in RECORDS:
                if (Path(records_from) / record).is_file():
                    shutil.copyfile(Path(records_from) / record, tmp / record)
        card = card or card_for_bundle(tmp, name=name or folder.name, usage_id=str(folder))
        write_text_atomic(tmp / CARD_NAME, card.render())
    return folder


def bundle_config(folder: str | Path) -> BundleConfig:
    """The config.json of a bundle folder."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; write the bundle with soundlm.save_pretrained "
                                "(`soundlm push` uploads only such folders)")
    return BundleConfig.from_json(read_json(path), path)


@dataclass
class PushPlan:
    """What `push_to_hub` uploads: every file of `folder` to the model repository `repo_id`."""

    folder: Path
    repo_id: str
    files: list[str]
    bytes: int
    private: bool


def plan_push(folder: str | Path, repo_id: str, private: bool = False) -> PushPlan:
    """Check `folder` is a shareable model (bundle or adapter bundle, with its card) and list its files."""
    from soundlm.adapters import is_adapter_bundle
    from soundlm.pretrained import check_model_folder, is_hub_id

    folder = Path(folder)
    if not is_hub_id(repo_id) or "@" in repo_id:
        raise ValueError(f"--repo must be a hub repository id 'user/name', got {repo_id!r}")
    if is_adapter_bundle(folder):
        from soundlm.adapters import AdapterManifest

        AdapterManifest.read(folder)
    else:
        check_model_folder(folder, what="model folder")
        bundle_config(folder)
    if not (folder / CARD_NAME).is_file():
        raise FileNotFoundError(f"{folder}: no {CARD_NAME} model card; save the model with soundlm.save_pretrained "
                                "(or `soundlm finetune`), which writes one")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not p.name.startswith((".tmp-", ".old-")))
    return PushPlan(folder=folder, repo_id=repo_id, files=files,
                    bytes=sum((folder / f).stat().st_size for f in files), private=private)


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str = "Upload soundlm model", api: Any | None = None) -> PushPlan:
    """Upload a bundle folder to the Hugging Face hub model repository `repo_id` (created if needed).

    api: an `huggingface_hub.HfApi` (default: one with `token`, else the logged-in user's).
    """
    plan = plan_push(folder, repo_id, private)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(plan.folder), repo_id=repo_id, repo_type="model",
                      commit_message=commit_message, allow_patterns=plan.files)
    return plan
