"""Progress and cancellation of a running generation, without a second decoding loop.

The library's decoders (`soundlm.lm.generate`, the palm tasks, token-mode compression) run
one model step per token and take no callback. Each step embeds its input tokens, so a
forward pre-hook on the embedding module of every loaded LM sees every step: it counts
steps per stage for the progress bar, and raises `Cancelled` when the jobs being generated
were all cancelled, which unwinds the generation within one step. Hooks report to the
thread that runs the step (`StepMonitor.watching`), so other threads' work is not counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn


class Cancelled(Exception):
    """Raised inside a generation step when every job it serves was cancelled."""


def step_module(model: nn.Module) -> nn.Module:
    """The submodule called exactly once per decoding step of `model` (its token embedding)."""
    from soundlm.lm.model import DelayLM

    if isinstance(model, DelayLM):
        return model.embeddings[0]  # all K embeddings run each step; the first stands for the step
    hf = getattr(model, "hf", model)  # TokenLM wraps the HF model; a palm model is one
    if hasattr(hf, "get_input_embeddings"):
        return hf.get_input_embeddings()
    raise ValueError(f"cannot follow the decoding steps of a {type(model).__name__}; it has no token embedding")


class StepMonitor:
    """Counts decoding steps of named models in the thread that watches; see the module doc."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._handles: list = []

    def attach(self, name: str, model: nn.Module) -> None:
        """Follow the steps of `model` under `name` (e.g. 'semantic', 'coarse', 'fine', 'palm')."""
        def hook(module: nn.Module, args: tuple) -> None:
            report = getattr(self._local, "report", None)
            if report is not None:
                report(name)  # may raise Cancelled

        self._handles.append(step_module(model).register_forward_pre_hook(hook))

    @contextmanager
    def watching(self, report: Callable[[str], None]) -> Iterator[None]:
        """Call `report(stage name)` for each step run in this thread inside the block."""
        self._local.report = report
        try:
            yield
        finally:
            self._local.report = None

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
