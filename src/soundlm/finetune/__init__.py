"""Fine-tuning a bundle on a user's audio: `finetune(FinetuneConfig(...))` (`soundlm finetune`).

`run.py` is the driver (tokenize, split, per-stage runs, export), `trainer.py` one stage's
LoRA or full fine-tuning with early stopping on the shared training loop.
"""

from soundlm.finetune.run import FinetuneConfig, FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune"]
