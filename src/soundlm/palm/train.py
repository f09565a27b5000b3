"""`soundlm train palm`: one causal LM for ASR, TTS, AST, S2ST and multi-step tasks.

The model starts from a text LM (`init`: hub id, HF folder, or a `soundlm train textlm`
run) with the AudioPaLM vocabulary appended, or from the same architecture at random
(`from_scratch`). Examples come from a token store of parallel speech (`palm.data`),
the loss covers target tokens only (`palm.tasks`). Checkpoints go to
`OUT/checkpoints/` (palm model files + `train_state.pt`), rerunning resumes, and the
finished model is exported to `OUT/final/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from soundlm.checkpoint import check_resume_settings, refuse_changed_settings
from soundlm.distributed import start_processes
from soundlm.palm.loop import LoopConfig, train_loop
from soundlm.palm.tasks import format_example

_RESUME_MUST_MATCH = ("store", "init", "tokenizer", "from_scratch", "tasks", "languages", "manifest",
                      "acoustic_vocab", "new_rows", "max_length", "max_examples", "seed", "batch_size", "processes")


@dataclass
class PalmTrainConfig:
    store: str
    out: str
    init: str
    tasks: tuple[str, ...] = ("asr", "ast", "tts", "s2st")
    from_scratch: bool = False
    tokenizer: str | None = None  # text tokenizer spec; default: the init's
    languages: tuple[str, ...] | None = None  # default: every language in the store
    manifest: str | None = None  # corpus manifest, when the store lacks text_id/transcript columns
    acoustic_vocab: bool = False  # also append the store's acoustic codebooks to the vocabulary
    new_rows: str = "mean"
    max_length: int = 1024
    max_examples: int | None = None
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 100
    ckpt_every: int = 500
    seed: int = 0
    device: str | None = None
    progress: bool = True


@dataclass
class PalmTrainResult:
    final_dir: Path
    step: int
    first_loss: float | None
    last_loss: float | None
    num_examples: int
    dropped_too_long: int
    counts: dict[str, int]
    main_process: bool = True  # False on the processes of a launched run that do not write




def train_palm(cfg: PalmTrainConfig) -> PalmTrainResult:
    """Train (or resume) an AudioPaLM-style model; returns where the final model went."""
    from safetensors.torch import load_model

    from soundlm.checkpoint import latest_checkpoint
    from soundlm.palm.data import build_task_examples, parse_tasks
    from soundlm.palm.model import extend_causal_lm, load_palm, save_palm, write_palm_files
    from soundlm.store import TokenStore

    tasks = parse_tasks(cfg.tasks)
    cfg.tasks = tuple(tasks)
    out = Path(cfg.out)
    store = TokenStore(cfg.store)  # fails early with a clear error if STORE is not a token store
    sm = store.manifest
    semantic_vocab_size = int(sm.required("semantic_vocab_size", cfg.store))
    procs = start_processes("palm", cfg.device)
    # The number of processes is part of the run: it sets the global batch.
    settings = {**asdict(cfg), "processes": procs.world}
    if procs.is_main:
        out.mkdir(parents=True, exist_ok=True)
        check_resume_settings(out, settings, _RESUME_MUST_MATCH)
    else:
        refuse_changed_settings(out, settings, _RESUME_MUST_MATCH)

    task_set = build_task_examples(cfg.store, tasks, split="train", languages=cfg.languages,
                                   manifest=cfg.manifest, max_examples=cfg.max_examples)
    languages = list(cfg.languages) if cfg.languages else task_set.languages

    ckpt = latest_checkpoint(out)
    if ckpt is not None:
        # The checkpoint carries vocabulary and tokenizer; the init model is not needed again.
        palm = load_palm(ckpt)
    else:
        codebooks = int(sm.acoustic_num_codebooks or 0) if cfg.acoustic_vocab else 0
        palm = extend_causal_lm(cfg.init, languages, semantic_vocab_size,
                                codebook_size=int(sm.acoustic_codebook_size or 0) if codebooks else 0,
                                num_codebooks=codebooks, tokenizer=cfg.tokenizer, from_scratch=cfg.from_scratch,
                                new_rows=cfg.new_rows, seed=cfg.seed)
        palm.meta.update({
            "tasks": tasks, "languages": languages, "store": str(Path(cfg.store).resolve()),
            "semantic_spec": sm.semantic_spec, "acoustic_spec": sm.acoustic_spec,
            "semantic_frame_rate": sm.semantic_frame_rate, "semantic_sample_rate": sm.semantic_sample_rate,
        })
    model_max = int(getattr(palm.model.config, "max_position_embeddings", cfg.max_length))
    limit = min(cfg.max_length, model_max)
    formatted = [format_example(ex, palm.tokenizer) for ex in task_set.examples]
    kept = [f for f in formatted if len(f.tokens) <= limit]
    dropped = len(formatted) - len(kept)
    if not kept:
        raise ValueError(f"every example is longer than {limit} tokens; raise --max-length (model limit "
                         f"{model_max}) or use shorter utterances")

    def restore_model(folder: Path) -> None:
        load_model(palm.model, str(folder / "model.safetensors"))

    loop = LoopConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup,
                      ckpt_every=cfg.ckpt_every, seed=cfg.seed, progress=cfg.progress)
    result = train_loop(palm.model, kept, palm.vocab.pad_id, out, lambda folder: write_palm_files(palm, folder),
                        restore_model, loop, procs, desc="palm")
    palm.model.to("cpu")
    final = out / "final"
    if procs.is_main:
        save_palm(palm, final)
    procs.barrier()
    return PalmTrainResult(final_dir=final, step=result.step, first_loss=result.first_loss,
                           last_loss=result.last_loss, num_examples=len(kept), dropped_too_long=dropped,
                           counts=task_set.counts, main_process=procs.is_main)
