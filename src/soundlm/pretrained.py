"""Loading models by name, folder or hub id; the default model that ships inside soundlm; fp16 export.

The wheel carries `soundlm/assets/speech-tiny/`, an AudioLM bundle folder (semantic/ coarse/
fine/ semantic_tokenizer/ codec/, see `soundlm.pipeline`) whose weights are stored as
float16 safetensors to keep the package small, and `soundlm/assets/prompt.wav`, a 3 s
prompt in a voice the model never heard in training. `load_default_pipeline()` loads the
bundle with every weight upcast to float32 (CPUs run half precision slowly and with poor
accuracy), and `export_bundle_fp16` writes such a half-precision copy of any bundle.

`from_pretrained(spec)` (also `soundlm.from_pretrained`) loads any model the way the Hugging
Face ecosystem does: `spec` is a local bundle folder, the shipped model's name
(`speech-tiny`), or a hub id (`user/name`, `user/name@revision`) fetched with
`huggingface_hub` into its cache. An adapter bundle (`soundlm finetune --save adapters`:
LoRA adapters alone, see `soundlm.adapters`) loads its base the same way and merges its
adapters into it, so it decodes at full speed.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from soundlm.pipeline import AudioLMPipeline

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL_NAME = "speech-tiny"
DEFAULT_PROMPT_NAME = "prompt.wav"
# How to get the assets back when they are missing (a source checkout without them, a trimmed install).
MISSING_FIX = ("reinstall soundlm (its wheel ships the model), or build the model with the speech-tiny recipe "
               "and pass --model FOLDER")
BUNDLE_FIX = "pass a folder written by AudioLMPipeline.save_bundle (semantic/ coarse/ fine/ + tokenizers)"
# A Hugging Face hub repository id, optionally with a revision: "user/name" or "user/name@v1".
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_./-]+)?$")


def default_model_dir() -> Path:
    """The packaged default model: `soundlm/assets/speech-tiny/` (it may be absent; see `load_default_pipeline`)."""
    return ASSETS_DIR / DEFAULT_MODEL_NAME


def default_prompt_path() -> Path:
    """The packaged 3 s prompt of a held-out voice, `soundlm/assets/prompt.wav`."""
    return ASSETS_DIR / DEFAULT_PROMPT_NAME


def is_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec))


def resolve_model(spec: str | Path, where: str | Path | None = None) -> Path:
    """The local folder a model spec names: a folder, the shipped model's name, or a hub id.

    A relative folder is looked up in the working directory, then under `where` (the folder of
    a file that named it). A hub id ("user/name[@revision]") is downloaded with
    `huggingface_hub.snapshot_download`, or read from its cache when the hub cannot be reached.
    """
    text = str(spec)
    candidates = [Path(text)] + ([Path(where) / text] if where is not None and not Path(text).is_absolute() else [])
    for folder in candidates:
        if folder.is_dir():
            return folder
    if text == DEFAULT_MODEL_NAME:
        return check_model_folder(default_model_dir(), what="soundlm's default model", fix=MISSING_FIX)
    # "runs/model" with a local runs/ folder is a missing local folder, not a hub repository.
    if not is_hub_id(text) or Path(text).parent.is_dir():
        raise FileNotFoundError(f"{spec}: no such model folder, and not a hub id (user/name); pass a folder written "
                                f"by save_pretrained, {DEFAULT_MODEL_NAME!r} or a Hugging Face hub id")
    return _download(text)


def _download(hub_id: str) -> Path:
    """A hub repository's snapshot folder (network first, then the local cache)."""
    from huggingface_hub import snapshot_download

    repo_id, _, revision = hub_id.partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None))
    except Exception as online_error:  # no network, no such repo, auth: try what the cache holds
        try:
            return Path(snapshot_download(repo_id, revision=revision or None, local_files_only=True))
        except Exception:
            raise FileNotFoundError(f"{hub_id}: could not download it from the Hugging Face hub "
                                    f"({type(online_error).__name__}: {str(online_error).splitlines()[0][:200]}) "
                                    "and it is not in the local cache; check the id and the network, or pass a "
                                    "local folder") from None


def from_pretrained(spec: str | Path = DEFAULT_MODEL_NAME, device: torch.device | str | None = None) -> AudioLMPipeline:
    """Load a model by folder, shipped name or hub id (see the module doc) as a float32 pipeline."""
    return load_pipeline(spec, device=device)


def load_pipeline(folder: str | Path, device: torch.device | str | None = None) -> AudioLMPipeline:
    """Load a bundle (float32 or float16 weights) or an adapter bundle as a float32 pipeline on `device`.

    `folder` may also be the shipped model's name or a hub id (`resolve_model`). Our own
    loaders copy half-precision files into float32 modules already; a Hugging Face codec,
    though, loads in the dtype of its files (`dtype="auto"` in transformers 5), so every
    part is upcast here as well.
    """
    from soundlm.adapters import is_adapter_bundle
    from soundlm.pipeline import AudioLMPipeline

    folder = resolve_model(folder)
    if is_adapter_bundle(folder):
        return _load_adapter_bundle(folder, device)
    pipe = AudioLMPipeline.from_bundle(folder, device=device)
    for module in (pipe.codec, pipe.semantic_tokenizer, *(s.model for s in pipe.stages)):
        if isinstance(module, torch.nn.Module) and _has_half_tensors(module):
            module.float()
    return pipe


def _load_adapter_bundle(folder: Path, device: torch.device | str | None) -> AudioLMPipeline:
    """The base an adapter bundle names, with the bundle's LoRA adapters merged into its stages."""
    from soundlm.adapters import AdapterManifest, load_adapters, weights_fingerprint

    manifest = AdapterManifest.read(folder)
    base = resolve_model(manifest.base, where=folder)
    stale = [s for s, digest in manifest.fingerprints.items()
             if (base / s / "model.safetensors").is_file() and weights_fingerprint(base / s / "model.safetensors") != digest]
    if stale:
        raise ValueError(f"{folder}: its adapters were trained on other {'/'.join(stale)} weights than those of the "
                         f"base {base}; load them onto the base they were trained on ({manifest.base})")
    pipe = load_pipeline(base, device=device)
    for name in manifest.stages:
        stage = getattr(pipe, name)
        stage.model = load_adapters(stage.model, folder / name).to(pipe.device).eval()
    return pipe


def load_default_pipeline(device: torch.device | str | None = None) -> AudioLMPipeline:
    """The shipped default model as a pipeline (CUDA when available, float32 weights)."""
    folder = check_model_folder(default_model_dir(), what="soundlm's default model", fix=MISSING_FIX)
    return load_pipeline(folder, device=device)


def check_model_folder(folder: str | Path, what: str = "model folder", fix: str = BUNDLE_FIX) -> Path:
    """Raise FileNotFoundError (one line, with the fix) unless `folder` holds a bundle's stages: semantic, coarse
    and fine, or no fine/ at all (a one-stage acoustic model, whose coarse stage the pipeline checks on load)."""
    from soundlm.pipeline import BUNDLE_PARTS, REQUIRED_PARTS

    folder = Path(folder)
    one_stage = (folder / "coarse" / "config.json").is_file() and not (folder / "fine").exists()
    parts = REQUIRED_PARTS if one_stage else BUNDLE_PARTS
    missing = [p for p in parts if not (folder / p / "config.json").is_file()]
    if missing:
        have = "does not exist" if not folder.exists() else f"lacks {'/, '.join(missing)}/"
        raise FileNotFoundError(f"{what} {folder} {have}; {fix}")
    return folder


def _has_half_tensors(module: torch.nn.Module) -> bool:
    tensors = list(module.parameters()) + list(module.buffers())
    return any(t.dtype in (torch.float16, torch.bfloat16) for t in tensors)


@dataclass
class Fp16Export:
    """What `export_bundle_fp16` wrote."""

    out_dir: Path
    bytes_before: int
    bytes_after: int
    files: list[str]  # safetensors files rewritten, relative to the bundle
    converted: int  # float tensors stored as float16
    kept: list[str] = field(default_factory=list)  # "file:tensor" left in float32 (out of float16 range)
    packed: int = 0  # matrices stored as int8 (lm_int8)

    @property
    def megabytes(self) -> float:
        return self.bytes_after / 1e6


def export_bundle_fp16(bundle_dir: str | Path, out_dir: str | Path, lm_int8: bool = False) -> Fp16Export:
    """Copy a bundle folder to `out_dir` with every safetensors file's float tensors in float16.

    lm_int8: the stage LMs' large matrices (semantic/ coarse/ fine/) are stored as int8 rows
    with a scale each instead (`soundlm.lm.quantize.pack_int8`: half of float16's bytes);
    `load_lm` unpacks them. Int8 decoding (the CPU default) then runs the very int8 weights it
    would get from the float bundle; float decoding runs their dequantized values.

    Our codec's training-only EMA sums (`embed_avg`) are left out; see SoundStreamCodec.from_pretrained.

    Integer and boolean tensors (counters, `inited` flags) keep their dtype, and so does a
    float tensor whose values do not fit float16 (|x| > 65504, e.g. a large EMA count):
    it would load back as inf. Other files (config.json, README, ...) are copied as they
    are. `out_dir` appears whole or not at all; it may be `bundle_dir` itself.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from soundlm.fileio import atomic_dir
    from soundlm.lm.quantize import pack_int8
    from soundlm.pipeline import BUNDLE_PARTS

    src, out = Path(bundle_dir).resolve(), Path(out_dir).resolve()
    check_model_folder(src, what="bundle")
    if src in out.parents:
        raise ValueError(f"{out} is inside the bundle {src}; write the half-precision copy somewhere else")
    result = Fp16Export(out_dir=Path(out_dir), bytes_before=0, bytes_after=0, files=[], converted=0)
    sources = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith((".tmp-", ".old-")))
    with atomic_dir(out) as tmp:
        for path in sources:
            rel = path.relative_to(src)
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            result.bytes_before += path.stat().st_size
            if path.suffix != ".safetensors":
                shutil.copy2(path, dest)
                continue
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata()
                tensors = {name: f.get_tensor(name) for name in f.keys()}
            if rel.parts[0] == "codec":
                # Training-only EMA sums of our codec's quantizers (2 MB at 8 x 1024 x 128);
                # SoundStreamCodec.from_pretrained restarts them from the codebooks.
                tensors = {name: t for name, t in tensors.items() if not name.endswith(".embed_avg")}
            if lm_int8 and rel.parts[0] in BUNDLE_PARTS:
                tensors, packed = pack_int8(tensors)
                result.packed += packed
            for name, t in tensors.items():
                if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
                    continue
                half = t.to(torch.float16)
                if bool(torch.isfinite(half).all()) or not bool(torch.isfinite(t).all()):
                    tensors[name] = half
                    result.converted += 1
                else:
                    tensors[name] = t.float()
                    result.kept.append(f"{rel}:{name}")
            save_file(tensors, str(dest), metadata=metadata)
            result.files.append(str(rel))
    result.bytes_after = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return result
