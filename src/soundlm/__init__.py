"""soundlm: audio language modeling (codecs, semantic tokens, AudioLM, AudioPaLM).

`soundlm.from_pretrained(folder_or_hub_id)` loads a model, `soundlm.save_pretrained(pipe, folder)`
writes one (see `soundlm.pretrained` and `soundlm.hub`); both import torch on first use only.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def from_pretrained(spec: Any = "speech-tiny", device: Any = None) -> Any:
    """An AudioLM pipeline from a bundle folder, an adapter bundle, the shipped model's name or a hub id."""
    from soundlm.pretrained import from_pretrained as load

    return load(spec, device=device)


def save_pretrained(pipe: Any, folder: Any, **kwargs: Any) -> Any:
    """Write `pipe` as a bundle folder with config.json and a README.md model card (`soundlm.hub.save_pretrained`)."""
    from soundlm.hub import save_pretrained as save

    return save(pipe, folder, **kwargs)
