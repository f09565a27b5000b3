"""Does `torch.compile` pay for a decoding step on this CPU?

Times one batch-1 decoding step of the shipped model's coarse stage (hidden 256, 4 layers,
vocabulary 3176) three ways:

- `soundlm`: the cached step `lm.generate` runs (`TokenLM.step`, eager);
- `static eager`: the same step written with static shapes (attention over the whole
  preallocated cache with a mask, the position as a tensor), which is what `torch.compile`
  needs to compile once instead of once per position;
- `static compiled`: that function through `torch.compile` (inductor, C++ kernels), after
  which the compile time is reported too.

Prints a table and writes JSON. Needs a C++ compiler (inductor's CPU backend).

    .venv/bin/python bench/compile_step.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402


def static_step(model, max_len: int):
    """A step function of fixed shapes over `model`'s weights: (tokens [B, 1], k, v, pos) -> logits [B, V]."""
    backbone, dec = model.backbone, model.decoder()
    hidden, nh, d = backbone.config.hidden_size, dec.num_heads, dec.head_dim
    cos, sin = dec._rope_table(max_len, torch.device("cpu"), torch.float32)  # sin carries rotate-half's sign
    emb, head, norm = model.hf.get_input_embeddings().weight, model.hf.get_output_embeddings().weight, backbone.norm.weight
    layers = [(torch.cat([b.self_attn.q_proj.weight, b.self_attn.k_proj.weight, b.self_attn.v_proj.weight]),
               b.self_attn.o_proj.weight, b.mlp.gate_proj.weight, b.mlp.up_proj.weight, b.mlp.down_proj.weight,
               b.input_layernorm.weight, b.post_attention_layernorm.weight) for b in backbone.layers]

    def step(tokens: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        x = F.embedding(tokens, emb)  # [B, 1, H]
        c, s = cos.index_select(0, pos.view(1)), sin.index_select(0, pos.view(1))  # [1, D]
        visible = (torch.arange(max_len) <= pos).view(1, 1, 1, max_len)
        for i, (wqkv, wo, wg, wu, wd, n1, n2) in enumerate(layers):
            h = F.rms_norm(x, (hidden,), n1, dec.eps)
            qkv = F.linear(h, wqkv).view(b, 1, 3 * nh, d).transpose(1, 2)  # [B, 3nh, 1, D]
            qk = qkv[:, :2 * nh] * c + torch.roll(qkv[:, :2 * nh], d // 2, dims=-1) * s
            k_cache[i].index_copy_(2, pos.view(1), qk[:, nh:])
            v_cache[i].index_copy_(2, pos.view(1), qkv[:, 2 * nh:])
            a = F.scaled_dot_product_attention(qk[:, :nh], k_cache[i], v_cache[i], attn_mask=visible)
            x = x + F.linear(a.transpose(1, 2).reshape(b, 1, nh * d), wo)
            h = F.rms_norm(x, (hidden,), n2, dec.eps)
            x = x + F.linear(F.silu(F.linear(h, wg)) * F.linear(h, wu), wd)
        return F.linear(F.rms_norm(x[:, -1], (hidden,), norm, dec.eps), head)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200, help="Steps per timed round.")
    ap.add_argument("--rounds", type=int, default=5, help="Interleaved rounds; the median round counts.")
    ap.add_argument("--out", type=Path, default=_HERE / "results" / "compile_step.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from soundlm.pretrained import default_model_dir
    from soundlm.stages import load_stage

    model = load_stage(default_model_dir() / "coarse", "coarse").model
    max_len, start = 512, 100
    dec = model.decoder()
    k_cache = torch.zeros(dec.num_layers, 1, dec.num_kv_heads, max_len, dec.head_dim)
    v_cache = torch.zeros_like(k_cache)
    tokens, pos = torch.randint(104, 1128, (1, 1)), torch.tensor(start)
    cache = model.new_cache(1, max_len)
    with torch.inference_mode():
        model.step(torch.randint(104, 1128, (1, start)), cache, 0)
        step = static_step(model, max_len)
        t = time.perf_counter()
        compiled = torch.compile(step, dynamic=False)
        compiled(tokens, k_cache, v_cache, pos)
        compile_seconds = time.perf_counter() - t
        difference = float((compiled(tokens, k_cache, v_cache, pos) - step(tokens, k_cache, v_cache, pos)).abs().max())
        runs = {"soundlm": lambda: model.step(tokens, cache, start),
                "static eager": lambda: step(tokens, k_cache, v_cache, pos),
                "static compiled": lambda: compiled(tokens, k_cache, v_cache, pos)}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, fn in runs.items():
                times[name].append(common.time_runs(lambda: [fn() for _ in range(args.steps)], 1, warmup=0).median / args.steps)
    ref = statistics.median(times["soundlm"])
    rows = [{"step": name, "ms_per_step": statistics.median(t) * 1e3, "vs_soundlm": ref / statistics.median(t)}
            for name, t in times.items()]
    print(f"\ncoarse stage of the shipped model, batch 1, {args.threads} thread(s); compile took {compile_seconds:.1f} s; "
          f"compiled vs eager logits differ by {difference:.1e}\n")
    common.print_table(rows, [("step", "step", "s"), ("ms_per_step", "ms / step", ".3f"),
                              ("vs_soundlm", "speed x soundlm", ".2f")])
    path = common.write_results("compile_step", {"benchmark": "compile_step", "machine": common.machine_info(args.threads),
                                                 "compile_seconds": compile_seconds, "max_abs_difference": difference,
                                                 "settings": vars(args) | {"out": str(args.out)}, "rows": rows},
                                args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
