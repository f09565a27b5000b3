"""The `soundlm` command line. Commands stay thin: parse arguments, call library code.

Heavy imports (torch, transformers) happen inside each command so `--help` is instant.
"""

from __future__ import annotations

import typer

from soundlm.cli import data as data_cli
from soundlm.cli import train as train_cli

app = typer.Typer(help="soundlm: audio language modeling from the command line.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
app.add_typer(data_cli.app, name="data", help="Synthesize corpora (speech, piano).")
app.add_typer(train_cli.app, name="train", help="Train tokenizers and language models.")

# Top-level commands are registered by their modules.
from soundlm.cli import tokenize as _tokenize  # noqa: E402,F401
from soundlm.cli import demo as _demo  # noqa: E402,F401
from soundlm.cli import palm as _palm  # noqa: E402,F401
from soundlm.cli import generate as _generate  # noqa: E402,F401
from soundlm.cli import eval as _eval  # noqa: E402,F401
from soundlm.cli import recipe as _recipe  # noqa: E402,F401
from soundlm.cli import compress as _compress  # noqa: E402,F401


def main() -> None:
    app()
