"""`soundlm push MODEL --repo ID`: upload a bundle (or adapter bundle) to the Hugging Face hub."""

from __future__ import annotations

from pathlib import Path

import typer


def push_command(
    model: Path = typer.Argument(..., help="A bundle folder written by save_pretrained or `soundlm finetune` "
                                           "(config.json, README.md model card, parts), or an adapter bundle."),
    repo: str = typer.Option(..., help="Hub model repository, user/name (created when missing)."),
    private: bool = typer.Option(False, help="Create the repository as private."),
    token: str | None = typer.Option(None, help="Hub token (default: the logged-in user's, `hf auth login`)."),
    message: str = typer.Option("Upload soundlm model", help="Commit message."),
) -> None:
    """Upload a model folder to the Hugging Face hub; `soundlm.from_pretrained("user/name")` loads it back."""
    from soundlm.hub import push_to_hub

    plan = push_to_hub(model, repo, private=private, token=token, commit_message=message)
    typer.echo(f"uploaded {len(plan.files)} files ({plan.bytes / 1e6:.1f} MB) to https://huggingface.co/{plan.repo_id}")
