"""Options that mirror a library default or a config dataclass, so each default is written once.

A command's option takes its default from the library: `LMTrainConfig.steps` (a dataclass
field's default is also a class attribute), `AudioLMSampling().coarse.temperature`, or
`keyword_defaults(run_demo)["seconds"]`; the command then builds its config with
`config_from(LMTrainConfig, ctx.params, ...)` instead of copying each option by hand.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The default of each argument of `fn` that has one, for options passed straight to it."""
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def config_from(cls: type[C], params: Mapping[str, Any], **overrides: Any) -> C:
    """Build the dataclass `cls` from a command's parsed options (`ctx.params`).

    Every option named like a field fills it, a Path as a string (configs hold paths as
    strings, to write them as JSON). `overrides` set the fields whose option has another
    name or form (a comma-separated list, 'none' for None); fields without an option keep
    their defaults.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    values = {name: str(v) if isinstance(v, Path) else v for name, v in params.items() if name in names}
    return cls(**{**values, **overrides})
