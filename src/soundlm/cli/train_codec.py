"""`soundlm train codec`: train (or resume) our SoundStream-style codec."""

from __future__ import annotations

from pathlib import Path

import typer


def train_codec_command(
    data: Path = typer.Argument(..., help="Audio folder/file, or a manifest.jsonl (or the corpus folder holding it)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder. Rerun the same command to resume from its "
                                                      "latest checkpoint."),
    preset: str = typer.Option("small", help="Codec: tiny (tests), small (16 kHz, 4 kbps, causal SEANet), "
                                             "fast (small's bitrate, frame-rate iSTFT decoder: ~2x cheaper "
                                             "steps, the shipped model's), base (24 kHz EnCodec-sized)."),
    steps: int = typer.Option(20_000, help="Total training steps (raise it and rerun to continue a finished run)."),
    batch_size: int = typer.Option(8, help="Audio crops per step."),
    segment_seconds: float = typer.Option(1.0, help="Length of each random crop in seconds."),
    lr: float = typer.Option(3e-4, help="Adam learning rate of the codec."),
    adversarial: bool = typer.Option(True, "--adversarial/--no-adversarial",
                                     help="Add the multi-scale STFT discriminator (GAN + feature matching)."),
    adv_start_step: int = typer.Option(2_000, help="Step after which the adversarial losses switch on."),
    ckpt_every: int = typer.Option(1_000, help="Save a checkpoint every N steps."),
    eval_every: int = typer.Option(500, help="Held-out mel distance / SI-SDR every N steps (metrics.jsonl)."),
    sample_every: int = typer.Option(1_000, help="Write original + reconstructed wavs at checkpoints that are "
                                                 "multiples of N."),
    heldout_fraction: float = typer.Option(0.05, help="Fraction of files held out for evaluation (ignored when the "
                                                      "manifest has a split column)."),
    seed: int = typer.Option(0, help="Seed for initialisation and the crop sequence."),
    num_workers: int = typer.Option(0, help="DataLoader worker processes for crops."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)."),
) -> None:
    """Train the codec on audio; export RUN/final for `load_codec` / `soundlm tokenize`."""
    from soundlm.train.codec import CodecTrainConfig, train_codec

    cfg = CodecTrainConfig(data=str(data), out=str(out), preset=preset, steps=steps, batch_size=batch_size,
                           segment_seconds=segment_seconds, lr=lr, adversarial=adversarial,
                           adv_start_step=adv_start_step, ckpt_every=ckpt_every, eval_every=eval_every,
                           sample_every=sample_every, heldout_fraction=heldout_fraction, seed=seed,
                           num_workers=num_workers, device=device)
    result = train_codec(cfg)
    summary = ""
    if result.last_eval:
        summary = "  " + "  ".join(f"{k}={v:.3f}" for k, v in sorted(result.last_eval.items()))
    typer.echo(f"step {result.step}: codec exported to {result.final_dir}{summary}")
