"""The eval report format (EvalSection, write_section, write_results) and its resume state (RowState)."""

import json

from soundlm.eval.report import STATE_DIR, EvalSection, RowState, state_path, write_results, write_section


def _section(name: str = "codec", wall: float = 1.5) -> EvalSection:
    return EvalSection(name=name, title=f"The {name} test", settings={"long": "x" * 300, "split": "heldout"},
                       summary={"score": 0.123456, "missing": None}, rows=[{"id": "a|b", "value": 2.0}],
                       wall_seconds=wall, notes=["higher is better"])


def test_markdown_lists_settings_summary_notes_and_rows():
    md = _section().markdown()
    assert md.startswith("## The codec test\n")
    assert "- split: `heldout`" in md and "- wall time: 1.5 s" in md
    assert "x" * 157 + "..." in md and "x" * 158 not in md  # long settings are cut in the table only
    assert "| score | missing |\n|---|---|\n| 0.1235 | - |" in md
    assert "> higher is better" in md
    assert "| a\\|b | 2.0000 |" in md  # a pipe in a cell does not break the table


def test_write_section_and_results(tmp_path):
    codec, lm = _section("codec", 1.5), _section("lm", 2.0)
    md, js = write_section(codec, tmp_path)
    assert md.read_text().startswith("# soundlm eval: codec\n\n## The codec test")
    assert json.loads(js.read_text()) == codec.to_json()
    assert json.loads(js.read_text())["settings"]["long"] == "x" * 300
    path = write_results([lm, codec], tmp_path, settings={"model": "m"})
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["order"] == ["lm", "codec"] and results["wall_seconds"] == 3.5
    assert results["settings"] == {"model": "m"} and results["sections"]["lm"] == lm.to_json()
    text = path.read_text()
    assert "- total wall time: 3.5 s" in text and text.index("## The lm test") < text.index("## The codec test")


def test_row_state_resumes_only_with_the_same_settings(tmp_path):
    assert state_path(None, "asr") is None
    path = state_path(tmp_path, "asr")
    assert path == tmp_path / STATE_DIR / "asr.json"
    state = RowState(path, {"seed": 0})
    state.put("u1", {"wer": 0.5})
    again = RowState(path, {"seed": 0})
    assert "u1" in again and again["u1"] == {"wer": 0.5}
    assert "u1" not in RowState(path, {"seed": 1})  # other settings: start afresh
    memory = RowState(None, {"seed": 0})
    memory.put("u2", {"wer": 0.0})
    assert "u2" in memory and [p.name for p in tmp_path.rglob("*.json")] == ["asr.json"]  # kept in memory only
