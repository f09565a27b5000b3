"""`soundlm export codec --onnx`: the codec as ONNX graphs that run on onnxruntime, without torch;
`soundlm export bundle`: a smaller (float16, optionally int8-stage) copy of a bundle."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Export models to other runtimes.")


@app.command("codec")
def export_codec_command(
    codec: str = typer.Argument("speech-tiny", help="A soundlm codec folder or training run, or a model bundle "
                                                   "(its codec/ is exported); default: the shipped model's codec."),
    out: Path = typer.Option(..., help="Output folder: encoder.onnx, decoder.onnx, config.json."),
    onnx: bool = typer.Option(False, "--onnx", help="Export to ONNX (the one format so far)."),
    num_codebooks: int | None = typer.Option(None, help="Codebooks in the graphs (default: all of the codec's)."),
) -> None:
    """Export the codec's encoder (audio -> codes) and decoder (codes -> audio) with their RVQ, checked
    against torch before anything is written."""
    from soundlm.codec import load_codec
    from soundlm.codec.onnx import DECODER_TOLERANCE, export_codec_onnx
    from soundlm.pipeline import CODEC_DIR
    from soundlm.pretrained import resolve_model

    if not onnx:
        raise ValueError("say which format: --onnx (the only export so far)")
    folder = Path(codec) if Path(codec).exists() else resolve_model(codec)
    if (folder / CODEC_DIR).is_dir():
        folder = folder / CODEC_DIR  # a bundle: its codec
    info = export_codec_onnx(load_codec(folder, device="cpu"), out, num_codebooks)
    typer.echo(f"wrote {out}/encoder.onnx and decoder.onnx ({info.num_codebooks} codebooks, opset {info.opset}); "
               f"against torch: {info.code_agreement:.4f} of the codes equal, decoder max error "
               f"{info.max_decoder_error:.1e} (allowed {DECODER_TOLERANCE:g})")


@app.command("bundle")
def export_bundle_command(
    bundle: str = typer.Argument(..., help="A model bundle folder, hub id or `speech-tiny`."),
    out: Path = typer.Option(..., help="Output folder (written whole or not at all)."),
    lm_int8: bool = typer.Option(False, "--lm-int8", help="Store the stage LMs' large matrices as int8 rows with a "
                                                          "scale each (half of float16's bytes; int8 decoding runs "
                                                          "the same weights as from the float bundle)."),
) -> None:
    """A smaller copy of a bundle: float tensors in float16, and with --lm-int8 the stage LMs in int8."""
    from soundlm.pretrained import export_bundle_fp16, resolve_model

    result = export_bundle_fp16(resolve_model(bundle), out, lm_int8=lm_int8)
    typer.echo(f"wrote {out}: {result.bytes_before / 1e6:.1f} MB -> {result.megabytes:.1f} MB "
               f"({result.converted} tensors in float16, {result.packed} matrices in int8)")
