"""Task examples from a token store of parallel speech (pairs share a `text_id`).

For every utterance u in language a (semantic ids s_u, transcript x_u, codes c_u) and
every utterance v of the same sentence in another language b:

    asr       s_u -> x_u                 tts  x_u -> s_u
    ast       s_u -> x_v                 s2st s_u -> s_v   (voice prompt: c_u)
    asr_ast   s_u -> x_u SEP x_v         continue: first half of s_u -> second half

The store carries `text_id`, `language`, `transcript` and `split` per row (written by
`soundlm tokenize` from the corpus manifest). A store written without them can be
completed from the corpus manifest (`manifest=`), matched by the audio `path`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from soundlm.palm.tasks import TaskExample
from soundlm.palm.vocab import TASKS

_COLUMNS = ["path", "semantic", "acoustic", "speaker", "transcript", "language", "split", "text_id"]


@dataclass
class TaskSet:
    examples: list[TaskExample]
    languages: list[str]  # languages seen in the selected records
    counts: dict[str, int] = field(default_factory=dict)  # examples per task
    skipped: int = 0  # records without transcript or language


def parse_tasks(spec: str | Sequence[str]) -> list[str]:
    """"asr,ast,tts" -> ["asr", "ast", "tts"], checked against the known tasks."""
    names = [t.strip().lower() for t in (spec.split(",") if isinstance(spec, str) else spec) if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise ValueError(f"unknown tasks {unknown or spec!r}; choose a comma-separated list from {list(TASKS)}")
    return list(dict.fromkeys(names))


def _manifest_rows(manifest: str | Path | None) -> dict[str, dict]:
    if manifest is None:
        return {}
    from soundlm.data import read_manifest

    return {row["path"]: row for row in read_manifest(manifest)}


def build_task_examples(store: str | Path, tasks: Sequence[str], split: str | None = "train",
                        languages: Sequence[str] | None = None, manifest: str | Path | None = None,
                        max_examples: int | None = None, partners_any_split: bool = False) -> TaskSet:
    """Every example of `tasks` from a token store, in a deterministic order.

    split: keep rows of this split ("train", "heldout"; None = all; rows without a split
    count as "train"). languages: keep only these languages (default: all in the store).
    partners_any_split: the split selects only the source utterance; the other-language
    partner (translation target) may come from any split. Evaluation on held-out voices
    needs this: a sentence's readings are voiced by random speakers, so the held-out reading
    of a sentence rarely has a held-out partner.
    """
    from soundlm.store import TokenStore

    tasks = parse_tasks(tasks)
    by_path = _manifest_rows(manifest)
    groups: dict[str, list] = defaultdict(list)
    singles: list = []
    skipped = 0
    for r in TokenStore(store).records(columns=_COLUMNS):
        row = by_path.get(r.path or "", {})
        r.transcript = r.transcript or row.get("transcript")
        r.language = r.language or row.get("language")
        r.text_id = r.text_id or row.get("text_id")
        r.split = r.split or row.get("split") or "train"
        if split is not None and r.split != split and not partners_any_split:
            continue
        if languages is not None and r.language not in languages:
            continue
        if not r.transcript or not r.language or r.semantic is None or len(r.semantic) < 2:
            skipped += 1
            continue
        if r.text_id:
            groups[r.text_id].append(r)
        else:
            singles.append(r)
    examples: list[TaskExample] = []
    seen_langs: set[str] = set()
    for group in [*(groups[k] for k in sorted(groups)), *([r] for r in singles)]:
        group = sorted(group, key=lambda r: r.id)
        for u in group:
            if split is not None and u.split != split:
                continue  # only a partner (partners_any_split)
            seen_langs.add(u.language)
            examples.extend(_monolingual(u, tasks))
            for v in group:
                if v.language != u.language:
                    examples.extend(_pair(u, v, tasks))
    if max_examples is not None:
        examples = examples[:max_examples]
    counts: dict[str, int] = defaultdict(int)
    for ex in examples:
        counts[ex.task] += 1
    if not examples:
        raise ValueError(f"{store}: no {'/'.join(tasks)} examples for split {split!r}"
                         f"{'' if languages is None else f' and languages {list(languages)}'} "
                         f"({skipped} rows lacked transcript/language); translation tasks need rows of several "
                         "languages sharing a text_id (make the corpus with `soundlm data speech --languages en,fr`)")
    return TaskSet(examples=examples, languages=sorted(seen_langs), counts=dict(counts), skipped=skipped)


def _origin(u) -> dict:
    return {"source_path": u.path, "source_speaker": u.speaker}


def _monolingual(u, tasks: list[str]) -> list[TaskExample]:
    out = []
    if "asr" in tasks:
        out.append(TaskExample("asr", f"asr:{u.id}", u.language, None, source_semantic=u.semantic,
                               target_text=u.transcript, **_origin(u)))
    if "tts" in tasks:
        out.append(TaskExample("tts", f"tts:{u.id}", u.language, None, source_text=u.transcript,
                               target_semantic=u.semantic, **_origin(u)))
    if "continue" in tasks:
        half = len(u.semantic) // 2
        out.append(TaskExample("continue", f"continue:{u.id}", None, None, source_semantic=u.semantic[:half],
                               target_semantic=u.semantic[half:], **_origin(u)))
    return out


def _pair(u, v, tasks: list[str]) -> list[TaskExample]:
    out = []
    a, b = u.language, v.language
    if "ast" in tasks:
        out.append(TaskExample("ast", f"ast:{u.id}:{v.id}", a, b, source_semantic=u.semantic,
                               target_text=v.transcript, source_text=u.transcript, **_origin(u)))
    if "s2st" in tasks:
        out.append(TaskExample("s2st", f"s2st:{u.id}:{v.id}", a, b, source_semantic=u.semantic,
                               target_semantic=v.semantic, voice_prompt=u.acoustic, source_text=u.transcript,
                               target_text=v.transcript, **_origin(u)))
    if "asr_ast" in tasks:
        out.append(TaskExample("asr_ast", f"asr_ast:{u.id}:{v.id}", a, b, source_semantic=u.semantic,
                               intermediate_text=u.transcript, target_text=v.transcript,
                               source_text=u.transcript, **_origin(u)))
    return out
