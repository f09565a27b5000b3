"""`soundlm train ...`: one sub-command per trainable part, each in its own module."""

import typer

app = typer.Typer(no_args_is_help=True)

# Each module adds its command to `app` on import.
from soundlm.cli import train_codec as _codec  # noqa: E402,F401
from soundlm.cli import train_semantic as _semantic  # noqa: E402,F401
from soundlm.cli import train_lm as _lm  # noqa: E402,F401
from soundlm.cli import train_phonetic as _phonetic  # noqa: E402,F401
