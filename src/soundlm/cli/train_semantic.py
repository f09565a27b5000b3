"""`soundlm train semantic`: fit a k-means semantic tokenizer on a corpus."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.train.semantic import SemanticTrainConfig, train_semantic


def train_semantic_cmd(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="Folder of audio files, a single file, or a corpus manifest.jsonl "
                                            "(or the corpus folder holding one)."),
    out: Path = typer.Option(..., "--out", help="Output folder for the tokenizer (config.json, "
                                                "centroids.safetensors, errors.jsonl, train_log.json)."),
    features: str = typer.Option(SemanticTrainConfig.features, "--features",
                                 help="Frame features: mfcc (39-dim, HuBERT iteration 1), mel (80 log-mel), chroma (music: "
                                      "12 pitch classes + tonal centroid + onset), cqt (music: 84 log semitone "
                                      "energies), hf "
                                      "(SSL model hidden states) or phonetic (our CTC encoder, see `soundlm train "
                                      "phonetic`)."),
    model: str | None = typer.Option(None, "--model", help="HF hub id or local folder for --features hf, e.g. "
                                                           "facebook/hubert-base-ls960; the encoder folder for "
                                                           "--features phonetic."),
    layer: int | None = typer.Option(None, "--layer", help="Hidden-state layer for --features hf (0 = transformer "
                                                           "input), e.g. 6 for HuBERT base."),
    clusters: int = typer.Option(SemanticTrainConfig.clusters, "--clusters",
                                 help="Number of k-means clusters (the semantic vocabulary)."),
    max_frames: int = typer.Option(SemanticTrainConfig.max_frames, "--max-frames",
                                   help="Frames sampled from the corpus for k-means."),
    seed: int = typer.Option(SemanticTrainConfig.seed, "--seed", help="Seed for frame sampling and k-means++ seeding."),
    batch_size: int = typer.Option(SemanticTrainConfig.batch_size, "--batch-size",
                                   help="Equal-length audio chunks per feature forward pass."),
    chunk_seconds: float = typer.Option(SemanticTrainConfig.chunk_seconds, "--chunk-seconds",
                                        help="Longer files are cut into chunks of this many seconds for feature "
                                             "extraction."),
    max_iter: int = typer.Option(SemanticTrainConfig.max_iter, "--max-iter",
                                 help="Maximum Lloyd iterations of k-means."),
    split: str = typer.Option(SemanticTrainConfig.split or "all", "--split",
                              help="Manifest split to use ('all' for every row)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1...; default: cuda if available."),
) -> None:
    """Extract features over a corpus, fit k-means and save a semantic tokenizer to OUT.

    Unreadable or unusable files are skipped and listed in OUT/errors.jsonl. Re-running a stopped command resumes feature extraction where it stopped.
    """
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = config_from(SemanticTrainConfig, ctx.params, split=None if split == "all" else split)
    result = train_semantic(source, out, config, device=device)
    typer.echo(f"saved tokenizer to {result.out_dir}")
    typer.echo(f"files: {result.num_files} ({result.num_errors} skipped, see {result.out_dir / 'errors.jsonl'})")
    typer.echo(f"frames: {result.sampled_frames} sampled of {result.total_frames}")
    typer.echo(f"k-means: inertia {result.inertia:.6g} ({result.mean_sq_distance:.4g} per frame), "
               f"{result.iterations} iterations{'' if result.converged else ' (not converged)'}")
    typer.echo(f"cluster usage: {result.clusters_used}/{clusters} used, perplexity {result.usage_perplexity:.1f}")
