"""Decoding speed: soundlm against audiolm-pytorch, audiocraft and Hugging Face generate.

Every model has the same size (hidden 512, 6 layers, 8 heads, fp32, random weights) and
gets the same prompt length and number of new tokens. Three workloads:

- semantic: one stream of 1024 ids (AudioLM stage 1). soundlm `lm.generate`,
  audiolm-pytorch `SemanticTransformerWrapper.generate`, HF `LlamaForCausalLM.generate`
  with its dynamic cache and with `cache_implementation="static"`.
- coarse: 4 codebooks of 1024 flattened frame by frame (AudioLM stage 2), conditioned on
  semantic ids. soundlm `lm.generate` with per-level constrained decoding,
  audiolm-pytorch `CoarseTransformerWrapper.generate`.
- delay: 4 codebooks of 1024 with MusicGen's delay pattern, K tokens per step. soundlm
  `lm.generate_delayed` with a `DelayLM`, audiocraft `LMModel.generate` with
  `DelayedPatternProvider`.

soundlm also runs with weight-only int8 and with bf16 weights (`soundlm.lm.quantize`,
`soundlm-int8` / `soundlm-bf16` rows; `--quantize` picks which).

tokens/s counts generated tokens of the whole batch; frames/s counts codec (or semantic)
frames, i.e. tokens / K for flattened streams and steps for the delay pattern.
The batch-1 floor is the decoding-step rate at which the weights a step reads (all but
the embedding tables) stream once through memory at the measured copy bandwidth.

    .bench-venv/bin/python bench/generate.py            # ~3-5 min on 2 cores
    .bench-venv/bin/python bench/generate.py --quick    # ~1 min, fewer tokens and repeats
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py shares its name with the stdlib `tokenize` (imported by inspect,
# linecache, torch): move this folder to the end of sys.path so `import tokenize` still
# finds the stdlib, while `import common` (no stdlib namesake) finds ours.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import common  # noqa: E402

HIDDEN, LAYERS, HEADS = 512, 6, 8
# SwiGLU width with ~the same weights as a 4x GELU MLP (3 * 1408 ~ 2 * 2048 per hidden unit).
INTERMEDIATE = 1408
CODEBOOK_SIZE = 1024
SEMANTIC_SIZE = 1024
NUM_CODEBOOKS = 4
TOP_K = 100


@dataclass
class Case:
    """One (workload, implementation, batch) measurement."""

    workload: str
    impl: str
    batch: int
    new_tokens: int  # per sequence
    tokens_per_frame: int  # K for flattened codes, 1 for semantic ids
    tokens_per_step: int  # K for the delay pattern, else 1
    weight_bytes: int  # read per decoding step
    params: int
    seconds: list[float]
    tokens_per_s: float = 0.0
    frames_per_s: float = 0.0
    steps_per_s: float = 0.0
    floor_fraction: float | None = None
    error: str | None = None


@dataclass
class Workload:
    """What the benchmark needs of one implementation: a model and a function to run."""

    impl: str
    model: object
    make_run: Callable[[int], Callable[[int], int]]  # batch -> run(new_tokens) -> new tokens per sequence


# ---- soundlm ---------------------------------------------------------------------------------
def ours_semantic(prompt_len: int, new_tokens: int, quantize: str = "none") -> Workload:
    import torch

    from soundlm.lm.generate import generate
    from soundlm.lm.model import LMConfig, TokenLM
    from soundlm.sampler import SamplingParams
    from soundlm.vocab import VocabLayout

    layout = VocabLayout(semantic_size=SEMANTIC_SIZE)
    cfg = LMConfig(layout.vocab_size, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS,
                   intermediate_size=INTERMEDIATE, max_positions=1024)
    model = _quantized(TokenLM.from_config(cfg, layout=layout).eval(), quantize)

    def make_run(batch: int) -> Callable[[int], int]:
        g = torch.Generator().manual_seed(0)
        lo = layout.semantic_offset
        prompt = torch.randint(lo, lo + SEMANTIC_SIZE, (batch, prompt_len), generator=g)
        prompt[:, 0] = layout.bos_id
        cache = model.new_cache(batch, prompt_len + new_tokens)
        sampling = SamplingParams(temperature=1.0, top_k=TOP_K)

        def run(new_tokens: int) -> int:
            out = generate(model, prompt, new_tokens, sampling, generator=g, cache=cache)
            return out.shape[1] - prompt_len
        return run

    return Workload(_impl(quantize), model, make_run)


def ours_coarse(prompt_len: int, new_tokens: int, quantize: str = "none") -> Workload:
    import torch

    from soundlm.lm.generate import generate
    from soundlm.lm.model import LMConfig, TokenLM
    from soundlm.patterns import acoustic_allowed_fn
    from soundlm.sampler import SamplingParams
    from soundlm.vocab import VocabLayout

    layout = VocabLayout(semantic_size=SEMANTIC_SIZE, codebook_size=CODEBOOK_SIZE, num_codebooks=NUM_CODEBOOKS)
    cfg = LMConfig(layout.vocab_size, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS,
                   intermediate_size=INTERMEDIATE, max_positions=1024)
    model = _quantized(TokenLM.from_config(cfg, layout=layout).eval(), quantize)

    def make_run(batch: int) -> Callable[[int], int]:
        g = torch.Generator().manual_seed(0)
        # BOS, semantic ids, SEP: the prompt AudioLM's coarse stage continues.
        lo = layout.semantic_offset
        prompt = torch.randint(lo, lo + SEMANTIC_SIZE, (batch, prompt_len), generator=g)
        prompt[:, 0] = layout.bos_id
        prompt[:, -1] = layout.sep_id
        allowed = acoustic_allowed_fn(layout, start=prompt_len, num_levels=NUM_CODEBOOKS)
        cache = model.new_cache(batch, prompt_len + new_tokens)
        sampling = SamplingParams(temperature=1.0, top_k=TOP_K)

        def run(new_tokens: int) -> int:
            out = generate(model, prompt, new_tokens, sampling, allowed_fn=allowed, generator=g, cache=cache)
            return out.shape[1] - prompt_len
        return run

    return Workload(_impl(quantize), model, make_run)


def ours_delay(prompt_len: int, new_tokens: int, quantize: str = "none") -> Workload:
    import torch

    from soundlm.lm.generate import generate_delayed
    from soundlm.lm.model import DelayLM, DelayLMConfig, LMConfig
    from soundlm.sampler import SamplingParams

    backbone = LMConfig(1, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS,
                        intermediate_size=INTERMEDIATE, max_positions=1024)
    model = _quantized(DelayLM(DelayLMConfig(NUM_CODEBOOKS, CODEBOOK_SIZE, backbone=backbone)).eval(), quantize)
    def make_run(batch: int) -> Callable[[int], int]:
        g = torch.Generator().manual_seed(0)
        prompt = torch.randint(0, CODEBOOK_SIZE, (batch, NUM_CODEBOOKS, prompt_len), generator=g)
        sampling = SamplingParams(temperature=1.0, top_k=TOP_K)

        def run(new_tokens: int) -> int:
            out = generate_delayed(model, prompt, new_tokens // NUM_CODEBOOKS, sampling, generator=g)
            return (out.shape[2] - prompt_len) * NUM_CODEBOOKS
        return run

    return Workload(_impl(quantize), model, make_run)


def _quantized(model, quantize: str):
    from soundlm.lm.quantize import quantize_lm

    return quantize_lm(model, quantize)


def _impl(quantize: str) -> str:
    return "soundlm" if quantize == "none" else f"soundlm-{quantize}"


# ---- Hugging Face ----------------------------------------------------------------------------
def hf_semantic(prompt_len: int, new_tokens: int, static: bool) -> Workload:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = SEMANTIC_SIZE + 4
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                      num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                      max_position_embeddings=1024, tie_word_embeddings=False, bos_token_id=None,
                      eos_token_id=None, pad_token_id=0, attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).eval()
    extra = {"cache_implementation": "static"} if static else {}

    def make_run(batch: int) -> Callable[[int], int]:
        prompt = torch.randint(4, vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(0))
        mask = torch.ones_like(prompt)

        def run(new_tokens: int) -> int:
            with torch.inference_mode():
                out = model.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens,
                                     min_new_tokens=new_tokens, do_sample=True, top_k=TOP_K, temperature=1.0,
                                     pad_token_id=0, **extra)
            return out.shape[1] - prompt_len
        return run

    return Workload("hf-llama-static" if static else "hf-llama", model, make_run)


# ---- audiolm-pytorch -------------------------------------------------------------------------
def local_t5_config() -> str:
    """A folder with a T5 config.json, written once.

    audiolm-pytorch's transformers read the text encoder's width from a T5 config even
    without text conditioning (`get_encoded_dim(t5_name)`, evaluated eagerly). The default
    name is a hub id and nothing is downloaded here, so we point it at a local config
    through the same `from_pretrained` path.
    """
    import tempfile

    from transformers import T5Config

    folder = Path(tempfile.gettempdir()) / "soundlm-bench-t5-config"
    if not (folder / "config.json").exists():
        T5Config(d_model=768).save_pretrained(folder)
    return str(folder)


def audiolm_semantic(alm, prompt_len: int, new_tokens: int) -> Workload:
    import torch

    transformer = alm.SemanticTransformer(dim=HIDDEN, depth=LAYERS, heads=HEADS, num_semantic_tokens=SEMANTIC_SIZE,
                                          t5_name=local_t5_config())
    # Random weights sample EOS now and then, which would end a row early; like HF's
    # min_new_tokens, push the EOS logit down so every run decodes the same length.
    with torch.no_grad():
        transformer.to_logits.bias[transformer.eos_id] = -1e4
    wrapper = alm.SemanticTransformerWrapper(transformer=transformer, unique_consecutive=False).eval()

    def make_run(batch: int) -> Callable[[int], int]:
        prime = torch.randint(0, SEMANTIC_SIZE, (batch, prompt_len), generator=torch.Generator().manual_seed(0))

        def run(new_tokens: int) -> int:
            # filter_thres keeps the top (1 - thres) of the logits: 0.9 -> ~top-100 of 1025.
            out = wrapper.generate(prime_ids=prime, max_length=prompt_len + new_tokens, batch_size=batch,
                                   filter_thres=1 - TOP_K / (SEMANTIC_SIZE + 1), temperature=1.0)
            return out.shape[1] - prompt_len
        return run

    return Workload("audiolm-pytorch", wrapper.transformer, make_run)


def audiolm_coarse(alm, prompt_len: int, new_tokens: int) -> Workload:
    import importlib

    import torch

    soundstream = importlib.import_module("audiolm_pytorch.soundstream")
    transformer = alm.CoarseTransformer(dim=HIDDEN, depth=LAYERS, heads=HEADS, num_semantic_tokens=SEMANTIC_SIZE,
                                        codebook_size=CODEBOOK_SIZE, num_coarse_quantizers=NUM_CODEBOOKS,
                                        t5_name=local_t5_config())
    # The wrapper reads the codec's quantizer groups; a small codec is enough (never run).
    codec = soundstream.SoundStream(codebook_size=CODEBOOK_SIZE, rq_num_quantizers=NUM_CODEBOOKS * 2,
                                    channels=8, strides=(2, 4, 5, 8), use_local_attn=False)
    wrapper = alm.CoarseTransformerWrapper(transformer=transformer, codec=codec, unique_consecutive=False).eval()
    def make_run(batch: int) -> Callable[[int], int]:
        semantic = torch.randint(0, SEMANTIC_SIZE, (batch, prompt_len), generator=torch.Generator().manual_seed(0))

        def run(new_tokens: int) -> int:
            out = wrapper.generate(semantic_token_ids=semantic, max_time_steps=new_tokens // NUM_CODEBOOKS,
                                   filter_thres=1 - TOP_K / (CODEBOOK_SIZE + 1), temperature=1.0)
            return out.shape[1] * out.shape[2]  # [B, frames, Q]
        return run

    return Workload("audiolm-pytorch", wrapper.transformer, make_run)


# ---- audiocraft ------------------------------------------------------------------------------
def audiocraft_delay(prompt_len: int, new_tokens: int) -> Workload:
    import torch
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
    from audiocraft.modules.conditioners import ConditionFuser, ConditioningProvider

    # MusicGen's LM settings: pre-norm, sinusoidal positions, no biases, torch SDPA attention.
    # No conditioning: an empty provider and a fuser with every method mapped to nothing.
    fuser = ConditionFuser({method: [] for method in ConditionFuser.FUSING_METHODS})
    model = LMModel(DelayedPatternProvider(n_q=NUM_CODEBOOKS), ConditioningProvider({}), fuser,
                    n_q=NUM_CODEBOOKS, card=CODEBOOK_SIZE, dim=HIDDEN, num_heads=HEADS, num_layers=LAYERS,
                    hidden_scale=4, norm="layer_norm", norm_first=True, bias_proj=False, bias_ff=False,
                    bias_attn=False, causal=True, memory_efficient=True, positional_embedding="sin").eval()
    def make_run(batch: int) -> Callable[[int], int]:
        prompt = torch.randint(0, CODEBOOK_SIZE, (batch, NUM_CODEBOOKS, prompt_len),
                               generator=torch.Generator().manual_seed(0))

        def run(new_tokens: int) -> int:
            with torch.inference_mode():
                out = model.generate(prompt, conditions=[], max_gen_len=prompt_len + new_tokens // NUM_CODEBOOKS, use_sampling=True,
                                     temp=1.0, top_k=TOP_K)
            return (out.shape[2] - prompt_len) * NUM_CODEBOOKS
        return run

    return Workload("audiocraft", model, make_run)


# ---- driver ----------------------------------------------------------------------------------
@dataclass
class Spec:
    """An implementation of a workload; build is None when its package did not import."""

    workload: str
    impl: str
    build: Callable[[], Workload] | None
    tokens_per_frame: int
    tokens_per_step: int
    import_error: str | None = None


@dataclass
class Entry:
    case: Case
    run: Callable[[int], int] | None
    produced: list[int]
    spent: float = 0.0


def prepare(specs: list[Spec], batches: list[int], new_tokens: int, warmup_tokens: int) -> list[Entry]:
    """Build every model and warm every (model, batch) up; failures become error rows."""
    entries = []
    for spec in specs:
        def case(b: int, wb: int = 0, params: int = 0, impl: str = spec.impl) -> Case:
            return Case(spec.workload, impl, b, new_tokens, spec.tokens_per_frame, spec.tokens_per_step, wb,
                        params, [])
        if spec.build is None:
            entries += [Entry(_with_error(case(b), spec.import_error), None, []) for b in batches]
            continue
        try:
            w = spec.build()
        except Exception as e:  # noqa: BLE001 - a peer that fails to build is a result to record
            entries += [Entry(_with_error(case(b), common._short_error(e)), None, []) for b in batches]
            continue
        wb, params = common.weight_bytes_per_step(w.model), common.num_params(w.model)
        for b in batches:
            c = case(b, wb, params, w.impl)
            try:
                run = w.make_run(b)
                run(warmup_tokens)  # allocations, kernel choice, rope tables
                entries.append(Entry(c, run, []))
            except Exception as e:  # noqa: BLE001
                entries.append(Entry(_with_error(c, common._short_error(e)), None, []))
        print(f"  built {spec.workload}/{w.impl} ({params / 1e6:.1f}M params)", flush=True)
    return entries


def _with_error(case: Case, error: str | None) -> Case:
    case.error = error or "not run"
    return case


def measure(entries: list[Entry], new_tokens: int, repeats: int, case_budget: float) -> None:
    """Round-robin over the cases so that load from other processes spreads over all of them.

    A case that has used up `case_budget` seconds stops after its first timed run (slow
    peers get fewer repeats; the JSON records how many).
    """
    for r in range(repeats):
        for e in entries:
            if e.run is None or (r > 0 and e.spent > case_budget):
                continue
            try:
                t = time.perf_counter()
                e.produced.append(e.run(new_tokens))
                dt = time.perf_counter() - t
            except Exception as ex:  # noqa: BLE001
                e.case.error, e.run = common._short_error(ex), None
                continue
            e.case.seconds.append(dt)
            e.spent += dt
        print(f"  round {r + 1}/{repeats} done", flush=True)


def summarise(entries: list[Entry], floor_steps: Callable[[int], float]) -> list[dict]:
    cases = [e.case for e in entries]
    for e in entries:
        c = e.case
        if not c.seconds:
            continue
        med = statistics.median(c.seconds)
        tokens = min(e.produced)  # per sequence; a peer may stop early on a sampled EOS
        c.tokens_per_s = c.batch * tokens / med
        c.frames_per_s = c.tokens_per_s / c.tokens_per_frame
        c.steps_per_s = tokens / c.tokens_per_step / med
        if tokens != c.new_tokens:
            c.error = f"produced {tokens} new tokens instead of {c.new_tokens} (early EOS)"
        if c.batch == 1:
            c.floor_fraction = c.steps_per_s / floor_steps(c.weight_bytes)
    rows = []
    for c in cases:
        row = asdict(c)
        row["weight_mb"] = c.weight_bytes / 1e6 if c.weight_bytes else None
        row["median_s"] = statistics.median(c.seconds) if c.seconds else None
        row["runs"] = len(c.seconds)
        row["floor_tokens_per_s"] = floor_steps(c.weight_bytes) * c.tokens_per_step if c.weight_bytes else None
        ref = next((r for r in cases if r.workload == c.workload and r.impl == "soundlm" and r.batch == c.batch), None)
        row["vs_soundlm"] = c.tokens_per_s / ref.tokens_per_s if ref and ref.tokens_per_s and c.tokens_per_s else None
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 new tokens, 2 rounds, a 4 s budget per case")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--prompt", type=int, default=32, help="prompt length in tokens (frames for delay)")
    ap.add_argument("--new-tokens", type=int, default=None,
                    help="new tokens per sequence, a multiple of 4 (default 256; 64 with --quick)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed rounds after a warm-up; the median counts (default 3; 2 with --quick)")
    ap.add_argument("--case-budget", type=float, default=None,
                    help="seconds after which a slow case gets no further rounds; it keeps >= 1 run "
                         "(default 8; 4 with --quick)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--skip", nargs="*", default=[], help="implementations to leave out, e.g. audiolm-pytorch")
    ap.add_argument("--quantize", nargs="*", default=["int8", "bf16"],
                    help="extra soundlm rows with these LM weight modes (int8, bf16)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default bench/results/generate.json, generate-quick.json with --quick)")
    args = ap.parse_args()
    for name, full, quick in (("new_tokens", 256, 64), ("repeats", 3, 2), ("case_budget", 8.0, 4.0)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.new_tokens <= 0 or args.new_tokens % NUM_CODEBOOKS:
        raise SystemExit(f"--new-tokens must be a positive multiple of {NUM_CODEBOOKS} (whole frames), "
                         f"got {args.new_tokens}")

    # Nothing here may download (fail at once instead of retrying a hub that is not there),
    # and peers' own progress bars would drown the table.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.time()
    bandwidth = common.memory_bandwidth()
    print(f"copy bandwidth: {bandwidth / 1e9:.2f} GB/s (read + write), {args.threads} threads", flush=True)

    def floor_steps(weight_bytes: int) -> float:
        return bandwidth / weight_bytes

    alm = common.import_audiolm_pytorch()
    acr = common.import_audiocraft()
    p, n, k = args.prompt, args.new_tokens, NUM_CODEBOOKS
    ours = [(workload, build, per_frame, per_step, mode) for mode in args.quantize
            for workload, build, per_frame, per_step in (("semantic", ours_semantic, 1, 1), ("coarse", ours_coarse, k, 1),
                                                         ("delay", ours_delay, 1, k))]
    specs = [
        Spec("semantic", "soundlm", lambda: ours_semantic(p, n), 1, 1),
        Spec("semantic", "hf-llama", lambda: hf_semantic(p, n, static=False), 1, 1),
        Spec("semantic", "hf-llama-static", lambda: hf_semantic(p, n, static=True), 1, 1),
        Spec("semantic", "audiolm-pytorch", (lambda: audiolm_semantic(alm.module, p, n)) if alm.module else None,
             1, 1, alm.error),
        Spec("coarse", "soundlm", lambda: ours_coarse(p, n), k, 1),
        Spec("coarse", "audiolm-pytorch", (lambda: audiolm_coarse(alm.module, p, n)) if alm.module else None,
             k, 1, alm.error),
        Spec("delay", "soundlm", lambda: ours_delay(p, n), 1, k),
        Spec("delay", "audiocraft", (lambda: audiocraft_delay(p, n)) if acr.module else None, 1, k, acr.error),
    ] + [Spec(w, _impl(mode), (lambda b=build, m=mode: b(p, n, m)), pf, ps) for w, build, pf, ps, mode in ours]
    specs = [s for s in specs if s.impl not in args.skip]
    # Each workload's rows together, soundlm's (fp32, then the quantized ones) first.
    order = {"semantic": 0, "coarse": 1, "delay": 2}
    specs.sort(key=lambda s: (order[s.workload], not s.impl.startswith("soundlm")))
    entries = prepare(specs, args.batches, n, warmup_tokens=2 * k)
    measure(entries, n, args.repeats, args.case_budget)
    rows = summarise(entries, floor_steps)

    print()
    common.print_table([r | {"tokens_per_s": r["tokens_per_s"] or None, "frames_per_s": r["frames_per_s"] or None}
                        for r in rows],
                       [("workload", "workload", "s"), ("impl", "impl", "s"), ("batch", "B", "d"),
                        ("weight_mb", "weights MB", ".1f"), ("tokens_per_s", "tokens/s", ".1f"),
                        ("frames_per_s", "frames/s", ".1f"), ("vs_soundlm", "x soundlm", ".2f"),
                        ("floor_tokens_per_s", "B1 floor tok/s", ".0f"), ("floor_fraction", "of floor", ".0%"),
                        ("runs", "runs", "d")])
    for r in rows:
        if r["error"]:
            print(f"note: {r['workload']}/{r['impl']}/B{r['batch']}: {r['error']}")
    payload = {
        "benchmark": "generate",
        "machine": common.machine_info(args.threads),
        "settings": {"hidden": HIDDEN, "layers": LAYERS, "heads": HEADS, "dtype": "float32", "prompt": p,
                     "soundlm_quantize": args.quantize,
                     "new_tokens": n, "repeats": args.repeats, "case_budget_s": args.case_budget, "warmup_runs": 1,
                     "batches": args.batches, "num_codebooks": k, "codebook_size": CODEBOOK_SIZE,
                     "semantic_size": SEMANTIC_SIZE, "sampling": f"temperature 1, top-k {TOP_K}",
                     "quick": args.quick},
        "bandwidth_bytes_per_s": bandwidth,
        "peers": [alm.describe(), acr.describe()],
        "results": rows,
        "wall_seconds": time.time() - started,
    }
    path = common.write_results("generate-quick" if args.quick else "generate", payload, args.out)
    print(f"\nwrote {path} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
