"""The column registry (keyrender.core.shotlist_columns.COLUMNS) and README's shot-list table describe
the same columns: names, which are required, and each default where README states one."""

from __future__ import annotations

import re
from pathlib import Path

from keyrender.core.shotlist import COLUMNS, KNOWN_COLUMNS, REQUIRED_COLUMNS, RowContext

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_table(text: str) -> dict[str, tuple[str, str]]:
    """README's shot-list table: column name -> (its 'required' cell, its 'meaning' cell). A row
    may document several columns (`duration` / `frames`)."""
    section = text.split("\n## The shot list\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names, required, meaning = cells[0], cells[1], " | ".join(cells[2:])
        for name in re.findall(r"`([a-z_]+)`", names):
            assert name not in rows, f"README documents '{name}' twice"
            rows[name] = (required, meaning)
    return rows


def _plain(text: str) -> str:
    return " ".join(text.replace("`", "").lower().split())


def disagreements(text: str) -> list[str]:
    """Where README's table and the registry disagree (empty when they agree)."""
    table = readme_table(text)
    out = []
    for name in sorted(set(table) ^ set(KNOWN_COLUMNS)):
        out.append(f"'{name}' is {'only in README' if name in table else 'not in README'}")
    by_name = {c.name: c for c in COLUMNS}
    for name, (required, meaning) in table.items():
        col = by_name.get(name)
        if col is None:
            continue
        if required.startswith("yes") != col.required:
            out.append(f"'{name}': README says required '{required}', the registry {col.required}")
        meaning = _plain(meaning)
        if col.default_doc is not None:
            d = _plain(col.default_doc)
            if not any(p in meaning for p in (f"default {d}", f"default: {d}", f"{d} (default)")):
                out.append(f"'{name}': README does not state the default '{col.default_doc}'")
        elif "default" in meaning and not any(by_name[n].default_doc for n, (_, m) in table.items()
                                              if _plain(m) == meaning and n in by_name):
            out.append(f"'{name}': README states a default the registry does not have")
    return out


def test_readme_table_and_registry_agree():
    assert disagreements(README.read_text(encoding="utf-8")) == []


def test_the_agreement_check_can_fail():
    text = README.read_text(encoding="utf-8")
    assert "| `fps` | | default 24." in text
    changed = (text.replace("| `fps` | | default 24.", "| `fps` | | default 25.")
               .replace("| `notes` |", "| `remarks` |")
               .replace("| `shot` | yes |", "| `shot` | |"))
    found = disagreements(changed)
    assert "'fps': README does not state the default '24'" in found
    assert "'notes' is not in README" in found and "'remarks' is only in README" in found
    assert any(f.startswith("'shot': README says required") for f in found)


def test_registry_records_are_complete_and_defaults_are_what_the_doc_says(tmp_path):
    assert len({c.name for c in COLUMNS}) == len(COLUMNS)
    assert REQUIRED_COLUMNS == ("shot", "scene", "prompt")
    for col in COLUMNS:
        assert col.doc and "\n" not in col.doc, col.name
    # a literal default is what parsing its documented spelling gives (fps 24, control_type
    # openpose, refine on), and that spelling is valid
    issues = []
    row = RowContext(cells={}, line=2, base=tmp_path, cast=None, allow_outside=False,
                     fail=lambda *a: issues.append(a))
    literal = [c for c in COLUMNS if c.default_doc and c.default is not None and not callable(c.default)]
    assert {c.name for c in literal} == {"fps", "control_type", "refine", "storyboard_repair"}
    for col in literal:
        assert col.parse(col.default_doc, row) == col.default, col.name
    assert issues == []


def test_hedge_default_named_in_the_docs_is_the_runs():
    from keyrender.pipeline import RenderOptions

    hedge = next(c for c in COLUMNS if c.name == "hedge")
    assert f"({RenderOptions().hedge:g})" in hedge.default_doc
