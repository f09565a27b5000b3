"""The `soundlm` command line. Commands stay thin: parse arguments, call library code.

Registration is explicit: a command module only defines functions, and the module of its
group adds them, here for the top level, in `train.py` for `soundlm train`. A group whose
commands live in its own module (`data.py`, `eval.py`) decorates them on its own `app`, and
is added here with `app.add_typer`. A new command is one function plus one line in its group.

Options take their defaults from the library's config dataclasses (see `options.py`), so
importing the command line imports the modules that define them, torch included: `--help`
takes about as long as `import torch`. Models and transformers still load inside the
commands. Documented errors (ValueError, FileNotFoundError, MissingToolError) become one line
`error: ...` for every command, in `errors.ReportingGroup`.
"""

from __future__ import annotations

import typer

from soundlm.cli import compress, data, demo, generate, music, palm, recipe, serve, tokenize, train
from soundlm.cli import doctor, export, finetune, hub
from soundlm.cli import eval as eval_cli  # not `eval`: that would hide the builtin
from soundlm.cli.errors import ReportingGroup

app = typer.Typer(help="soundlm: audio language modeling from the command line.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, cls=ReportingGroup)

# `soundlm --help` lists the commands in this order, then the groups.
app.command("tokenize")(tokenize.tokenize_command)
app.command("demo")(demo.demo)
app.command("asr")(palm.asr_command)
app.command("translate")(palm.translate_command)
app.command("tts")(palm.tts_command)
app.command("continue")(generate.continue_command)
app.command("generate")(generate.generate_command)
app.command("music")(music.music_command)
app.command("compress")(compress.compress_command)
app.command("decompress")(compress.decompress_command)
app.command("recipe")(recipe.recipe)
app.command("serve")(serve.serve_command)
app.command("finetune")(finetune.finetune_command)
app.command("push")(hub.push_command)
app.command("doctor")(doctor.doctor_command)
app.add_typer(data.app, name="data", help="Synthesize corpora (speech, piano, music).")
app.add_typer(train.app, name="train", help="Train tokenizers and language models.")
app.add_typer(export.app, name="export", help="Export models to other runtimes (the codec to ONNX).")
app.add_typer(eval_cli.app, name="eval", help="Evaluation suite: codec, lm, units, continuation, lexical, asr, voice, analysers, mulan, all.")


def main() -> None:
    app()
