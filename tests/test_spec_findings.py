"""Every chapter records exactly the findings the specification gives it, with the specification's criterion.

The specification (``../shared/BOOK_SPEC.md``) lies outside the repository; ``tests/data/spec_findings.json``
is its extract (``scripts/spec_criteria.py``). A finding's rule is code and is reviewed by reading it; what a
test can hold fixed is that the criterion shown beside each verdict is the specification's, word for word, and
that no finding of the specification is missing or recorded in another chapter.
"""
import ast
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC_FINDINGS = json.loads((ROOT / "tests" / "data" / "spec_findings.json").read_text())


def _normal(text: str) -> str:
    return " ".join(text.split()).rstrip(".")


def _recorded(path: Path) -> list[tuple[str, str | None]]:
    """(id, criterion) of every ``findings.record(...)`` call in a chapter source; None for a computed text."""
    tree = ast.parse(path.read_text())
    constants = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) for t in n.targets if isinstance(t, ast.Name)}
    out = []
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if not (isinstance(node, ast.Call) and isinstance(func, ast.Attribute) and func.attr == "record"
                and ast.unparse(func.value).split(".")[-1] == "findings"):
            continue
        args = list(node.args) + [None] * 3
        kw = {k.arg: k.value for k in node.keywords}
        fid, crit = args[0] or kw.get("id"), args[2] or kw.get("criterion")
        if isinstance(crit, ast.Name):  # a text bound once to a name, e.g. CRITERION = ("..." "...")
            crit = ast.Constant(constants.get(crit.id))
        out.append((fid.value, crit.value if isinstance(crit, ast.Constant) else None))
    return out


CHAPTERS = sorted((ROOT / "nbs_src").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_records_the_specs_findings_with_its_criteria(path):
    number = int(path.stem[:2])
    expected = {fid: f["criterion"] for fid, f in SPEC_FINDINGS.items() if f["chapter"] == number}
    recorded = _recorded(path)
    ids = [fid for fid, _ in recorded]
    assert sorted(set(ids)) == sorted(expected), (
        f"{path.name} records {sorted(set(ids))}; the specification gives it {sorted(expected)}")
    for fid, criterion in recorded:
        assert criterion is not None, f"{fid}: the criterion must be the specification's text, not computed"
        assert _normal(criterion) == _normal(expected[fid]), (
            f"{fid} in {path.name}: the recorded criterion differs from the specification's:\n"
            f"  recorded: {criterion}\n  spec:     {expected[fid]}")


def test_the_extract_matches_the_specification_when_it_is_at_hand():
    spec = ROOT.parent / "shared" / "BOOK_SPEC.md"
    if not spec.exists():
        pytest.skip(f"the specification is not at {spec} on this machine; the committed extract is checked above")
    script = importlib.util.spec_from_file_location("spec_criteria", ROOT / "scripts" / "spec_criteria.py")
    mod = importlib.util.module_from_spec(script)
    script.loader.exec_module(mod)
    assert mod.extract(spec.read_text()) == SPEC_FINDINGS, (
        "tests/data/spec_findings.json is out of date: run `python scripts/spec_criteria.py` and commit it")


def test_a_criterion_that_differs_from_the_spec_fails(tmp_path):
    chapter = tmp_path / "04_hessian.py"
    chapter.write_text('findings.record("F-GN", "003", "the top eigenvalues roughly agree", {}, bool)\n')
    (fid, criterion), = _recorded(chapter)
    assert fid == "F-GN" and _normal(criterion) != _normal(SPEC_FINDINGS["F-GN"]["criterion"])
