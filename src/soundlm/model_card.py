"""The model card (README.md) of a soundlm bundle: what it is, what it was trained on, how it scores, how to use it.

A card is generated from what the bundle folder itself records, so it never claims more
than the files do: `recipe.json` (the recipe, its corpus and training settings), `eval.json`
(the `soundlm eval all` report; one table row per headline number), `finetune.json` (a
fine-tuned model's base, data and held-out losses) and `config.json` (`BundleConfig`). The
YAML header is the Hugging Face hub's model-card metadata (license, library, tags, base model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from soundlm.fileio import read_json

CARD_NAME = "README.md"


@dataclass
class ModelCard:
    name: str
    description: str
    license: str = "apache-2.0"
    base_model: str | None = None
    training_data: list[str] = field(default_factory=list)  # one markdown line each
    training: list[str] = field(default_factory=list)
    evaluation: list[tuple[str, str, str]] = field(default_factory=list)  # (section, metric, value)
    evaluation_note: str | None = None
    usage_id: str = "FOLDER_OR_HUB_ID"  # what the usage snippet loads
    music: bool = False  # a music bundle (mulan/ inside): text-to-music usage
    tags: list[str] = field(default_factory=lambda: ["audio", "audio-language-model", "audiolm", "soundlm"])

    def render(self) -> str:
        """The README.md text: hub metadata header, then the sections."""
        head = ["---", f"license: {self.license}", "library_name: soundlm", "tags:"]
        head += [f"- {t}" for t in self.tags]
        if self.base_model:
            head.append(f"base_model: {self.base_model}")
        head.append("---")
        body = [f"# {self.name}", "", self.description, ""]
        body += ["## Training data", ""] + ([f"- {line}" for line in self.training_data] or ["- not recorded"]) + [""]
        if self.training:
            body += ["## Training", ""] + [f"- {line}" for line in self.training] + [""]
        body += ["## Evaluation", ""]
        if self.evaluation:
            body += ["| evaluation | metric | value |", "|---|---|---|"]
            body += [f"| {section} | {metric} | {value} |" for section, metric, value in self.evaluation]
            body += [""] + ([self.evaluation_note, ""] if self.evaluation_note else [])
        else:
            body += ["Not evaluated yet: run `soundlm eval all --model FOLDER ...` and save the bundle again.", ""]
        if self.music:
            python = ["from soundlm.music.pipeline import MusicLMPipeline", "",
                      f'music = MusicLMPipeline.from_bundle("{self.usage_id}")  # a local folder or a hub id',
                      'waves = music.generate(["a calm piano piece in C major"], seconds=8.0, num_samples=2)',
                      "# waves[caption][sample]: [C, S] at music.sample_rate"]
            cli = f'soundlm music "a calm piano piece in C major" --model {self.usage_id} --seconds 8 --out out/'
        else:
            python = ["import soundlm", "",
                      f'pipe = soundlm.from_pretrained("{self.usage_id}")  # a local folder or a hub id',
                      'audio = pipe.continue_audio("prompt.wav", seconds=4.0)[0]  # [C, S] at pipe.sample_rate']
            cli = f"soundlm continue prompt.wav --model {self.usage_id} --seconds 4 --out out/"
        body += ["## How to use", "", "```python", *python, "```", "", "```bash", cli, "```", "",
                 f"License: {self.license}.", ""]
        return "\n".join(head + [""] + body)


def _value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def evaluation_rows(eval_json: dict) -> list[tuple[str, str, str]]:
    """(section title, metric, value) of each headline number of a `soundlm eval all` results.json."""
    sections = eval_json.get("sections") or {}
    rows = []
    for name in eval_json.get("order") or sorted(sections):
        section = sections.get(name) or {}
        for metric, value in (section.get("summary") or {}).items():
            if isinstance(value, (int, float, str)):
                rows.append((section.get("title") or name, metric, _value(value)))
    return rows


def card_for_bundle(folder: str | Path, name: str | None = None, usage_id: str | None = None,
                    base_model: str | None = None) -> ModelCard:
    """A card from the records in a bundle folder (recipe.json, eval.json, finetune.json, config.json)."""
    folder = Path(folder)
    card = ModelCard(name=name or folder.name, description="", usage_id=usage_id or name or str(folder),
                     base_model=base_model)
    recipe = read_json(folder / "recipe.json") if (folder / "recipe.json").is_file() else None
    finetune = read_json(folder / "finetune.json") if (folder / "finetune.json").is_file() else None
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    card.music = (folder / "mulan").is_dir()
    what = ("An AudioLM model (semantic tokens -> coarse -> fine acoustic tokens, three causal Llama-style LMs) "
            "with its semantic tokenizer and neural codec, for soundlm.")
    if card.music:
        what = ("A MusicLM model (text -> music): causal Llama-style stage LMs conditioned on the condition ids of "
                "its MuLan (a joint music-text embedding, inside as mulan/), with classifier-free guidance, plus its "
                "semantic tokenizer and neural codec, for soundlm.")
        card.tags = card.tags + ["musiclm", "text-to-music"]
    if config:
        what += (f" Audio: {config.get('sample_rate')} Hz; codec {config.get('num_codebooks')} codebooks of "
                 f"{config.get('codebook_size')} codes at {config.get('acoustic_frame_rate')} Hz; "
                 f"{config.get('semantic_vocab_size')} semantic units at {config.get('semantic_frame_rate')} Hz.")
    card.description = what
    if recipe:
        s = recipe.get("settings", {})
        card.description += f" Trained from scratch by `{recipe.get('command', 'soundlm recipe ' + recipe.get('recipe', ''))}`."
        if s.get("corpus") == "music":
            card.training_data.append(
                f"synthetic music (`soundlm data music`): {s.get('music_clips')} clips of music21's corpus rendered "
                "by fluidsynth with several General MIDI instruments, keys, tempi and dynamics, captioned from their "
                "attributes; held-out pieces and held-out instrument x tonic pairs are the evaluation's")
        else:
            card.training_data.append(
                f"synthetic English speech (`soundlm data speech`): {s.get('hours')} h of text read by "
                f"{s.get('voices')} training voices (espeak-ng and flite); {s.get('heldout_voices')} held-out voices, "
                "never trained on, are the evaluation's")
        for part in ("semantic_lm", "coarse_lm", "fine_lm"):
            if part in s and (folder / part.replace("_lm", "")).is_dir():  # a one-stage bundle has no fine/
                p = s[part]
                card.training.append(f"{part.replace('_lm', '')} LM: preset {p.get('preset') or s.get('lm_preset')}, "
                                     f"{p.get('steps')} steps, batch {p.get('batch_size')}, "
                                     f"{p.get('window_seconds')} s windows, lr {p.get('lr')}")
        if "codec_preset" in s:
            card.training.append(f"codec: preset {s['codec_preset']}, {s.get('codec_steps')} steps"
                                 + (f" (reused from {s['codec_from']})" if s.get("codec_from") else ""))
    if finetune:
        card.base_model = card.base_model or finetune.get("base")
        mode = "full fine-tuning" if finetune.get("full") else f"LoRA (rank {finetune.get('rank')})"
        card.description += (f" Fine-tuned from `{finetune.get('base')}` with `soundlm finetune` ({mode} of the "
                             f"{', '.join(finetune.get('stages', []))} stage(s)).")
        data = finetune.get("data_summary", {})
        card.training_data.append(f"fine-tuning data: `{finetune.get('data')}`: {data.get('files')} files, "
                                  f"{data.get('minutes', 0):.1f} min ({data.get('heldout_files')} held out for early "
                                  f"stopping; {data.get('skipped', 0)} skipped)")
        for stage, r in (finetune.get("stages_result") or {}).items():
            card.training.append(f"{stage}: {r.get('steps')} steps (best at step {r.get('best_step')}"
                                 f"{', stopped early' if r.get('stopped_early') else ''})")
            card.evaluation.append((f"fine-tuning held-out loss ({stage})", "nats/token before -> after",
                                    f"{_value(r.get('heldout_loss_base'))} -> {_value(r.get('heldout_loss_best'))}"))
    if (folder / "eval.json").is_file():
        card.evaluation += evaluation_rows(read_json(folder / "eval.json"))
        card.evaluation_note = (("Numbers from `soundlm eval music` on held-out captions" if card.music else
                                 "Numbers from `soundlm eval all` on the held-out voices")
                                + " (eval.json and EVAL.md in this folder hold the settings and every row).")
    return card
