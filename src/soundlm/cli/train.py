"""`soundlm train ...`: one sub-command per trainable part, each in its own module."""

import typer

from soundlm.cli import (compress, palm, train_codec, train_instrument, train_lm, train_mulan, train_phonetic,
                         train_prefer, train_semantic)

app = typer.Typer(no_args_is_help=True)

# `soundlm train --help` lists them in this order.
app.command("codec")(train_codec.train_codec_command)
app.command("semantic")(train_semantic.train_semantic_cmd)
app.command("lm")(train_lm.train_lm_command)
app.command("phonetic")(train_phonetic.train_phonetic_cmd)
app.command("textlm")(palm.train_textlm_command)
app.command("palm")(palm.train_palm_command)
app.command("compressor")(compress.train_compressor_command)
app.command("instrument")(train_instrument.train_instrument_command)
app.command("prefer")(train_prefer.train_prefer_command)
app.command("mulan")(train_mulan.train_mulan_command)
