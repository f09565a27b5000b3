"""`soundlm train codec`: train (or resume) our SoundStream-style codec."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.train.codec import CodecTrainConfig, train_codec


def train_codec_command(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Audio folder/file, or a manifest.jsonl (or the corpus folder holding it)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder. Rerun the same command to resume from its "
                                                      "latest checkpoint."),
    preset: str = typer.Option(CodecTrainConfig.preset,
                               help="Codec: tiny (tests), small (16 kHz, 4 kbps, causal SEANet), fast (small's "
                                    "bitrate, frame-rate iSTFT decoder: ~2x cheaper steps, the shipped model's), "
                                    "base (24 kHz EnCodec-sized)."),
    steps: int = typer.Option(CodecTrainConfig.steps,
                              help="Total training steps (raise it and rerun to continue a finished run)."),
    batch_size: int = typer.Option(CodecTrainConfig.batch_size,
                                   help="Audio crops per step and process (launched as N processes: N x this)."),
    segment_seconds: float = typer.Option(CodecTrainConfig.segment_seconds,
                                          help="Length of each training crop in seconds (every file is cut into "
                                               "crops of this length; an epoch reads each crop once)."),
    lr: float = typer.Option(CodecTrainConfig.lr, help="Adam learning rate of the codec."),
    adversarial: bool = typer.Option(CodecTrainConfig.adversarial, "--adversarial/--no-adversarial",
                                     help="Add the multi-scale STFT discriminator (GAN + feature matching)."),
    adv_start_step: int = typer.Option(CodecTrainConfig.adv_start_step,
                                       help="Step after which the adversarial losses switch on."),
    stft_weight: float = typer.Option(CodecTrainConfig.stft_weight,
                                      help="Weight of the multi-resolution STFT loss (spectral convergence + log "
                                           "magnitude; its spectral convergence is normalised over each process's "
                                           "batch)."),
    lowband_weight: float = typer.Option(CodecTrainConfig.lowband_weight,
                                         help="Weight of a long-window (4096) log-magnitude STFT loss below 2 kHz, "
                                              "which sees lines a decoder adds between partials (a buzz at its "
                                              "frame rate's multiples); 0: off."),
    init_from: str | None = typer.Option(None, "--init-from",
                                         help="Start from this trained codec folder (its architecture and weights, "
                                              "not --preset's)."),
    decoder_only: bool = typer.Option(False, "--decoder-only",
                                      help="With --init-from: train the decoder alone; the encoder and quantizer "
                                           "stay frozen, so the codes (and stores and LMs trained on them) stay "
                                           "valid and the new codec replaces the old one in a bundle."),
    disc_filters: int = typer.Option(CodecTrainConfig.disc_filters,
                                     help="Channels of the discriminator's first convolutions."),
    ckpt_every: int = typer.Option(CodecTrainConfig.ckpt_every, help="Save a checkpoint every N steps."),
    log_every: int = typer.Option(CodecTrainConfig.log_every, help="Write training losses every N steps."),
    eval_every: int = typer.Option(CodecTrainConfig.eval_every,
                                   help="Held-out mel distance / SI-SDR every N steps (metrics.jsonl)."),
    sample_every: int = typer.Option(CodecTrainConfig.sample_every,
                                     help="Write original + reconstructed wavs at checkpoints that are multiples "
                                          "of N."),
    heldout_fraction: float = typer.Option(CodecTrainConfig.heldout_fraction,
                                           help="Fraction of files held out for evaluation (ignored when the "
                                                "manifest has a split column)."),
    seed: int = typer.Option(CodecTrainConfig.seed, help="Seed for initialisation and the crop sequence."),
    num_workers: int = typer.Option(CodecTrainConfig.num_workers, help="DataLoader worker processes for crops."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)."),
) -> None:
    """Train the codec on audio; export RUN/final for `load_codec` / `soundlm tokenize`."""
    result = train_codec(config_from(CodecTrainConfig, ctx.params))
    if not result.main_process:
        return
    summary = ""
    if result.last_eval:
        # The quality numbers; the per-level codebook usage is in metrics.jsonl (where collapse shows).
        summary = "  " + "  ".join(f"{k}={v:.3f}" for k, v in sorted(result.last_eval.items())
                                   if k.startswith(("mel_distance", "si_sdr")))
    typer.echo(f"step {result.step}: codec exported to {result.final_dir}{summary}")
