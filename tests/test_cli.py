"""The command line's own machinery: registration, error reporting, defaults from the configs."""

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from soundlm.cli import app
from soundlm.cli.errors import ReportingGroup, reported
from soundlm.cli.options import config_from, keyword_defaults
from soundlm.data import MissingToolError

COMMANDS = {
    "tokenize", "demo", "asr", "translate", "tts", "continue", "generate", "music", "compress", "decompress", "recipe", "serve",
    "data speech", "data piano", "data music",
    "train codec", "train semantic", "train lm", "train phonetic", "train textlm", "train palm", "train compressor",
    "eval codec", "eval lm", "eval continuation", "eval lexical", "eval units", "eval asr", "eval acoustic",
    "eval all", "eval palm", "eval analysers", "train instrument", "train prefer", "train mulan", "eval mulan", "eval music",
    "finetune", "push", "export codec", "export bundle", "eval voice", "doctor",
}


def _leaves(command, path=()):
    children = getattr(command, "commands", None)
    if not children:
        return [" ".join(path)]
    return [leaf for name, child in children.items() for leaf in _leaves(child, (*path, name))]


def test_every_command_is_registered_and_has_help():
    assert set(_leaves(typer.main.get_command(app))) == COMMANDS
    runner = CliRunner()
    for name in sorted(COMMANDS):
        res = runner.invoke(app, [*name.split(), "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, (name, res.output)


def _toy_app() -> typer.Typer:
    toy = typer.Typer(cls=ReportingGroup)

    @toy.command("fail")
    def fail(kind: str) -> None:
        if kind == "value":
            raise ValueError("x.wav: too short (pass a longer file)")
        if kind == "missing":
            raise FileNotFoundError("x.wav: no such file")
        if kind == "tool":
            raise MissingToolError("espeak-ng not found")
        if kind == "exit1":
            with reported(exit_code=1):
                raise ValueError("a job failure that exits 1")
        raise RuntimeError("a bug")

    @toy.command("ok")
    def ok() -> None:
        typer.echo("fine")

    return toy


@pytest.mark.parametrize("kind, code, message", [
    ("value", 2, "error: x.wav: too short (pass a longer file)"),
    ("missing", 2, "error: x.wav: no such file"),
    ("tool", 2, "error: espeak-ng not found"),
    ("exit1", 1, "error: a job failure that exits 1"),
])
def test_documented_errors_are_one_line_on_stderr(kind, code, message):
    res = CliRunner().invoke(_toy_app(), ["fail", kind])
    assert res.exit_code == code
    assert res.stderr.strip() == message and res.stdout == ""


def test_other_exceptions_are_not_swallowed():
    res = CliRunner().invoke(_toy_app(), ["fail", "bug"])
    assert isinstance(res.exception, RuntimeError) and "error:" not in res.output
    assert CliRunner().invoke(_toy_app(), ["ok"]).output == "fine\n"


@dataclass
class _Config:
    data: str
    out: str | None = None
    steps: int = 10
    languages: tuple[str, ...] = ("en",)


def test_config_from_takes_the_options_named_like_fields():
    params = {"data": Path("corpus/manifest.jsonl"), "out": None, "steps": 3, "langs": "en,fr", "progress": False}
    cfg = config_from(_Config, params, languages=("en", "fr"))
    assert cfg == _Config(data="corpus/manifest.jsonl", out=None, steps=3, languages=("en", "fr"))
    assert config_from(_Config, {"data": "d"}) == _Config(data="d")  # no option: the field's default


def test_keyword_defaults():
    def f(a, b=2, *, c=None, d="x"):
        return a

    assert keyword_defaults(f) == {"b": 2, "c": None, "d": "x"}


def test_train_lm_defaults_are_the_config_defaults(monkeypatch, tmp_path):
    from soundlm.cli import train_lm as cli_train_lm
    from soundlm.train.lm import LMTrainConfig

    seen = []

    def capture(cfg):
        seen.append(cfg)
        raise ValueError("stop here")

    monkeypatch.setattr(cli_train_lm, "train_lm", capture)
    store, run = tmp_path / "store", tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "lm", str(store), "--stage", "coarse", "--out", str(run)])
    assert res.exit_code == 2 and "stop here" in res.output
    assert seen == [LMTrainConfig(store=str(store), out=str(run), stage="coarse")]
    res = CliRunner().invoke(app, ["train", "lm", str(store), "--stage", "fine", "--out", str(run), "--steps", "7",
                                   "--init", str(tmp_path / "hf"), "--exclude-split", "none", "--no-progress"])
    assert seen[-1] == LMTrainConfig(store=str(store), out=str(run), stage="fine", steps=7,
                                     init=str(tmp_path / "hf"), exclude_split=None, progress=False)


def test_sampling_defaults_are_audiolm_sampling(monkeypatch, tmp_path):
    import soundlm.pretrained
    from soundlm.pipeline import AudioLMSampling

    seen = []

    class Pipeline:
        def quantize(self, mode):  # the command quantizes the stage LMs (--quantize) before generating
            return self

        def generate(self, seconds, num_samples, sampling, seed, progress):
            seen.append(sampling)
            raise ValueError("stop here")

    monkeypatch.setattr(soundlm.pretrained, "load_default_pipeline", lambda device=None: Pipeline())
    args = ["generate", "--seconds", "1", "--out", str(tmp_path / "out")]
    assert CliRunner().invoke(app, args).exit_code == 2
    assert seen == [AudioLMSampling()]
    CliRunner().invoke(app, [*args, "--top-k-coarse", "5", "--top-p-fine", "1", "--context", "0.25"])
    default = AudioLMSampling()
    assert seen[-1] == replace(default, coarse=replace(default.coarse, top_k=5), fine=replace(default.fine, top_p=1.0),
                               context=0.25)
