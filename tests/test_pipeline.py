"""The build pipeline: notebook generation, the generated pages, and the chapters' conventions."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "nbs_src").glob("[0-9][0-9]_*.py"))


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_notebooks_use_portable_kernel_and_drop_stale(tmp_path, monkeypatch):
    mk = _load_script("make_notebooks")
    src, out = tmp_path / "nbs_src", tmp_path / "book" / "chapters"
    src.mkdir(parents=True)
    (src / "01_demo.py").write_text("# %% [markdown]\n# # Demo\n\n# %%\nx = 1\n")
    out.mkdir(parents=True)
    (out / "09_gone.ipynb").write_text("{}")
    monkeypatch.setattr(mk, "SRC", src)
    monkeypatch.setattr(mk, "OUT", out)
    monkeypatch.setattr(mk, "ROOT", tmp_path)
    assert mk.main() == 0
    nb = nbformat.read(out / "01_demo.ipynb", as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"]
    assert not (out / "09_gone.ipynb").exists()
    before = (out / "01_demo.ipynb").stat().st_mtime_ns
    assert mk.main() == 0  # unchanged source: the notebook is not rewritten
    assert (out / "01_demo.ipynb").stat().st_mtime_ns == before


def test_report_gathers_findings_with_their_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_FINDINGS_DIR", str(tmp_path))
    from helpers import findings

    findings.start_chapter("99_demo")
    findings.record("F-DEMO", source="test", criterion="x >= 1", measured={"x": 2.0}, rule=lambda m: m["x"] >= 1,
                    show=False)
    findings.record("F-OTHER", source="test", criterion="y <= 0", measured=3.0, rule=lambda v: v <= 0, show=False)
    text = _load_script("build_pages").report()
    assert "F-DEMO" in text and "F-OTHER" in text
    assert "1 of 2 findings reproduced" in text
    row = next(line for line in text.splitlines() if line.startswith("| F-OTHER"))
    assert findings.NOT_REPRODUCED in row


def test_toc_lists_existing_pages_only_and_every_chapter():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    generated = {"book/report", "book/api"}
    for f in files:
        if f.startswith("book/chapters/"):
            assert (ROOT / "nbs_src" / (Path(f).name + ".py")).exists(), f"{f} has no source in nbs_src/"
        elif f not in generated:
            assert (ROOT / (f + ".md")).exists(), f"{f}.md is listed in _toc.yml but missing"
    for ch in CHAPTERS:
        assert f"book/chapters/{ch.stem}" in files, f"{ch.name} is not in _toc.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_conventions(path):
    text = path.read_text()
    assert re.search(r'helpers\.setup\(\s*"' + path.stem + '"', text), "a chapter calls helpers.setup with its id"
    assert re.search(r"findings\.table\(\)", text), "a chapter ends with its findings table"
    first_tf = re.search(r"^(import tensorflow|from tensorflow|import keras|from keras)", text, re.M)
    assert first_tf is None or text.index("import helpers") < first_tf.start(), \
        "import helpers before TensorFlow/Keras: it sets TensorFlow's determinism options, which act only at import"
    solutions = len(re.findall(r":class: dropdown", text))
    assert 2 <= solutions <= 6, f"2-4 exercises with dropdown solutions expected, found {solutions} dropdowns"
    assert "BOOK_PROFILE" not in text and "profile() ==" not in text, "chapters pick their config via helpers.setup only"
    assert "jupyter:" not in text.split("\n# %%")[0], "no Jupytext/kernel header in the source"
    for fid in re.findall(r'record\(\s*"(F-[A-Z0-9]+)"', text):
        assert text.count(fid) >= 2, f"{fid} should be named in the prose as well as recorded"


def test_findings_json_is_plain(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_FINDINGS_DIR", str(tmp_path))
    import numpy as np

    from helpers import findings

    findings.start_chapter("98_json")
    findings.record("F-NP", source="t", criterion="c", measured={"a": np.float64(1.5), "b": np.arange(3)},
                    rule=lambda m: bool(m["a"] > 1), show=False)
    data = json.loads((tmp_path / "quick" / "98_json.json").read_text())
    assert data["findings"][0]["measured"] == {"a": 1.5, "b": [0, 1, 2]}
    assert data["findings"][0]["verdict"] == findings.REPRODUCED


def test_robustness_table_gathers_seeds_and_reaches_the_report(tmp_path):
    rob = _load_script("robustness")
    for seed, value in ((0, 0.9), (1, 0.2)):
        folder = tmp_path / f"seed{seed}" / "findings" / "quick"
        folder.mkdir(parents=True)
        verdict = "reproduced" if value > 0.5 else "not reproduced at this scale"
        (folder / "99_demo.json").write_text(json.dumps({"chapter": "99_demo", "profile": "quick", "seed": seed,
            "findings": [{"id": "F-DEMO", "measured": {"x": value}, "verdict": verdict}]}))
    table = rob.gather([0, 1], out=tmp_path)
    assert table["99_demo"]["F-DEMO"]["0"]["verdict"] == "reproduced"
    assert table["99_demo"]["F-DEMO"]["1"]["figure"] == "x = 0.2"
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps({"seeds": [0, 1], "table": table}))
    pages = _load_script("build_pages")
    lines = "\n".join(pages.robustness(path))
    assert "| 99_demo | F-DEMO | reproduced (x = 0.9) | not reproduced at this scale (x = 0.2) | no |" in lines
    missing = tmp_path / "missing.json"
    assert "Not run for this build" in "\n".join(pages.robustness(missing, record=missing))
    # without a table of its own a build shows the committed record, with the commit of each run
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"seeds": [0, 1], "table": table, "seconds": {"99_demo seed 0": 12.3},
                                  "runs": {"99_demo seed 0": {"commit": "abc1234", "date": "d", "load": 1.0}}}))
    lines = "\n".join(pages.robustness(missing, record=record))
    assert "Not run for this build" in lines and "record.json" in lines
    assert "| 99_demo | F-DEMO | reproduced (x = 0.9)" in lines
    assert "| 99_demo seed 0 | 12 | `abc1234` | d | 1.0 |" in lines


def test_robustness_key_figure_includes_lists_and_the_record_merges_chapters():
    rob = _load_script("robustness")
    # a constant list (the configuration) is skipped; a varying list of numbers is the figure, as is a number
    per_seed = {"0": {"widths": [32, 128], "mean": [0.31, 0.30], "n": 4, "ok": True},
                "1": {"widths": [32, 128], "mean": [0.29, 0.30], "n": 4, "ok": False}}
    assert rob._key_figure(per_seed) == "mean"
    assert rob._figure("mean", [0.29, 0.30]) == "mean = [0.29, 0.3]"
    assert rob._key_figure({"0": {"ok": True, "n": 4}, "1": {"ok": False, "n": 5}}) == "n"
    row = lambda v: {"0": {"verdict": v, "figure": "x = 1"}}
    record = {"seeds": [0], "table": {"01_a": {"F-A": row("old")}, "02_b": {"F-B": row("old")}},
              "seconds": {"01_a seed 0": 1.0, "02_b seed 0": 2.0},
              "runs": {"01_a seed 0": {"commit": "c1"}, "02_b seed 0": {"commit": "c1"}}}
    new = {"seeds": [0], "table": {"02_b": {"F-B": row("new")}}, "seconds": {"02_b seed 0": 3.0},
           "runs": {"02_b seed 0": {"commit": "c2"}}}
    merged = rob.merge_record(record, new)
    assert merged["table"] == {"01_a": {"F-A": row("old")}, "02_b": {"F-B": row("new")}}
    assert merged["seconds"] == {"01_a seed 0": 1.0, "02_b seed 0": 3.0}
    assert merged["runs"]["02_b seed 0"] == {"commit": "c2"} and merged["seeds"] == [0]
    # a chapter rerun at fewer seeds than the record has is refused, not recorded with seeds missing
    record["seeds"] = [0, 1, 2]
    with pytest.raises(ValueError, match="lack the record's seeds"):
        rob.merge_record(record, new)


def test_no_chapter_cell_displays_a_finding_repr():
    """A cell ending in a bare findings.record(...) or findings.get(...) would show the raw Finding(...) repr."""
    import ast

    import jupytext

    offenders = []
    for path in CHAPTERS:
        for i, cell in enumerate(jupytext.read(path).cells):
            if cell.cell_type != "code" or cell.source.rstrip().endswith(";"):
                continue
            body = ast.parse(cell.source).body
            last = body[-1] if body else None
            if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
                fn = last.value.func
                if getattr(fn, "attr", getattr(fn, "id", "")) in ("record", "get"):
                    offenders.append(f"{path.name} cell {i}")
    assert not offenders, f"cells that display a Finding repr: {offenders}; assign the result (_ = ...)"


#: the code box of the HTML theme holds 94 characters at a 1400 px window; a longer line scrolls sideways
CODE_LINE_LIMIT = 94


def long_code_lines(path: Path, limit: int = CODE_LINE_LIMIT) -> list[str]:
    """The code lines a reader sees (every code cell but ``remove-input`` ones) longer than ``limit``."""
    import jupytext

    out = []
    for i, cell in enumerate(jupytext.read(path).cells):
        if cell.cell_type != "code" or "remove-input" in cell.metadata.get("tags", []):
            continue
        out += [f"cell {i}: {len(line)} chars: {line.strip()[:60]}..." for line in cell.source.splitlines()
                if len(line) > limit]
    return out


@pytest.mark.parametrize("path", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_code_lines_fit_the_code_box(path):
    long = long_code_lines(path)
    assert not long, f"{len(long)} code lines over {CODE_LINE_LIMIT} characters:\n" + "\n".join(long[:20])


def test_the_line_limit_check_finds_long_lines_and_spares_removed_input(tmp_path):
    src = tmp_path / "01_demo.py"
    src.write_text("# %%\nx = 1  # " + "y" * 100 + "\n\n# %% tags=[\"remove-input\"]\nz = '" + "w" * 100 + "'\n")
    found = long_code_lines(src)
    assert len(found) == 1 and found[0].startswith("cell 0")


def test_source_numbers_become_citations_outside_mathematics_and_code():
    from helpers.findings import cite_sources

    cite = lambda text: cite_sources(text, "myst")
    assert cite("the dense layer (000 eq. 2.6), then") == "the dense layer {cite}`haink2023hessian{eq. 2.6}`, then"
    assert cite("as 001 says") == "as {cite}`haink2023card` says"  # the card is not the thesis
    assert cite("002's scaled statistic") == "Meng and Yao's scaled statistic"
    assert cite("004 eq. (3.1.3) writes") == "{cite}`sauter2023fisher{eq. (3.1.3)}` writes"
    assert cite("(000 Sec. 3.2, 5.2)") == "{cite}`haink2023hessian{Sec. 3.2, 5.2}`"
    for untouched in ("1,000 points", "eta = 0.002", "$\\text{(000 eq. 2.3)}$", "`x = 003`", "``x = 003``"):
        for style in ("text", "myst", "rst"):
            assert cite_sources(untouched, style) == untouched
    # outputs read as the bibliography's labels; docstrings get reStructuredText roles
    assert cite_sources("000 Sec. 7.5, Fig. 7.15; 003 Sec. 3") == \
        "Haink 2023a, Sec. 7.5, Fig. 7.15; Sankar et al. 2021, Sec. 3"
    assert cite_sources("as in (001)") == "as in (Haink 2023b)"
    assert cite_sources("see 004 eq. 5.1.2.", "rst") == "see :cite:`sauter2023fisher{eq. 5.1.2}`."
    with pytest.raises(ValueError, match="style"):
        cite_sources("000", "latex")
    assert _load_script("build_pages").chapter_title("01_sgd_basics").startswith("Chapter 1: ")


def test_findings_tables_and_api_docstrings_cite_sources_by_label(tmp_path, monkeypatch):
    from helpers import findings

    f = findings.Finding(id="F-X", source="000 Sec. 7.2", criterion="as 002 eq. 3 says", measured={"a": 1},
                         verdict=findings.REPRODUCED, chapter="01_demo", profile="quick")
    assert findings.rows([f])[0][1:3] == ["Haink 2023a, Sec. 7.2", "as Meng and Yao 2023, eq. 3 says"]
    assert "{cite}`haink2023hessian{Sec. 7.2}`" in findings.markdown_table([f], "myst")
    lines = ["Exactly 000 eq. 2.5, for |x|."]
    _load_ext("api_docstrings")._process(None, "function", "f", None, {}, lines)
    assert lines == ["Exactly :cite:`haink2023hessian{eq. 2.5}`, for \\|x\\|."]


def test_heatmaps_have_no_grid_lines():
    """The book's style draws grid lines; a colour map under them looks hatched (issue 15)."""
    import jupytext

    bare = [f"{path.stem} cell {i}" for path in CHAPTERS for i, c in enumerate(jupytext.read(path).cells)
            if c.cell_type == "code" and re.search(r"\.(imshow|pcolormesh)\(", c.source)
            and "grid(False)" not in c.source]
    assert not bare, f"colour maps without ax.grid(False) (or use plotting.heatmap): {bare}"


#: the most lines a code cell shown open on the page may have (STYLE.md: "rarely over 15 lines")
CELL_LINE_LIMIT = 15

@pytest.mark.parametrize("path", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_long_code_cells_are_collapsed(path):
    """A code cell over 15 lines is collapsed (hide-input) or removed; better still, it becomes a helper."""
    import jupytext

    open_long = [f"cell {i} ({len(c.source.splitlines())} lines)" for i, c in enumerate(jupytext.read(path).cells)
                 if c.cell_type == "code" and len(c.source.splitlines()) > CELL_LINE_LIMIT
                 and not {"hide-input", "remove-input", "remove-cell"} & set(c.metadata.get("tags", []))]
    assert not open_long, f"code cells over {CELL_LINE_LIMIT} lines shown open: {open_long}"


def _load_ext(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "_ext" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_api_docstrings_escape_norms_and_shapes_but_not_markup():
    esc = _load_ext("api_docstrings").escape_line
    assert esc("the distance |f - y| of x (B, *S)") == "the distance \\|f - y\\| of x (B, \\*S)"
    for kept in ("``|x|``", ":math:`\\|A v\\|_2`", "a *pointwise* map", "**bold**", "| a line block",
                 "======  ====="):
        assert esc(kept) == kept
    assert esc("* a bullet with |x|") == "* a bullet with \\|x\\|"


def test_bibliography_labels_are_author_year_and_tell_the_thesis_from_its_card():
    from pybtex.database import parse_file
    from pybtex.plugin import find_plugin

    _load_ext("bib_labels").setup(None)
    style = find_plugin("pybtex.style.formatting", "authoryear")()
    labels = {e.key: e.label for e in style.format_bibliography(parse_file(ROOT / "book" / "references.bib"))}
    assert labels["haink2023hessian"] == "Haink 2023a" and labels["haink2023card"] == "Haink 2023b"
    assert labels["meng2023impact"] == "Meng and Yao 2023"
    assert labels["sankar2021deeper"] == "Sankar et al. 2021"


#: a code cell draws a figure when it shows one, opens one, or calls the widget explorer (static panels)
_DRAWS_FIGURE = re.compile(r"plt\.show\(\)|\bsubplots\(|plt\.figure\(|widgets\.explore\(")


def figure_cells_without_caption(path: Path) -> list[str]:
    """The code cells of ``path`` that draw a figure but lack mystnb.figure.caption or mystnb.image.alt."""
    import jupytext

    out = []
    for i, cell in enumerate(jupytext.read(path).cells):
        if cell.cell_type != "code" or not _DRAWS_FIGURE.search(cell.source):
            continue
        meta = cell.metadata.get("mystnb", {})
        missing = [k for k, v in (("caption", meta.get("figure", {}).get("caption")),
                                  ("alt text", meta.get("image", {}).get("alt"))) if not str(v or "").strip()]
        if missing:
            out.append(f"cell {i} ({cell.source.splitlines()[0][:50]}...): no {' and no '.join(missing)}")
    return out


@pytest.mark.parametrize("path", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_figure_has_a_caption_and_alt_text(path):
    """STYLE.md: every figure says what to see; screen readers get a description (issue 15)."""
    bare = figure_cells_without_caption(path)
    assert not bare, ("figure cells need `# %% mystnb={\"figure\": {\"caption\": ...}, \"image\": {\"alt\": ...}}` "
                      "in their header:\n" + "\n".join(bare))


def test_the_caption_check_finds_bare_figures_and_the_notebook_keeps_the_metadata(tmp_path, monkeypatch):
    src = tmp_path / "nbs_src"
    src.mkdir()
    (src / "01_demo.py").write_text(
        "# %%\nfig, ax = subplots(1, 1)\nplt.show()\n\n"
        '# %% mystnb={"figure": {"caption": "What to see."}, "image": {"alt": "A line."}}\n'
        "plt.plot([1, 2])\nplt.show()\n\n"
        '# %% mystnb={"figure": {"caption": "Only a caption."}}\nwidgets.explore(draw, {}, [{}])\n')
    found = figure_cells_without_caption(src / "01_demo.py")
    assert len(found) == 2 and found[0].startswith("cell 0") and "no alt text" in found[1]
    mk = _load_script("make_notebooks")
    monkeypatch.setattr(mk, "SRC", src)
    monkeypatch.setattr(mk, "OUT", tmp_path / "book" / "chapters")
    monkeypatch.setattr(mk, "ROOT", tmp_path)
    assert mk.main() == 0
    nb = nbformat.read(tmp_path / "book" / "chapters" / "01_demo.ipynb", as_version=4)
    assert nb.cells[1].metadata["mystnb"] == {"figure": {"caption": "What to see."}, "image": {"alt": "A line."}}


def test_jupytext_pairing_keeps_the_figure_metadata():
    """A notebook saved in JupyterLab is written back to nbs_src/ through jupytext.toml's filter."""
    import jupytext
    from jupytext.config import load_jupytext_configuration_file

    config = load_jupytext_configuration_file(str(ROOT / "jupytext.toml"))
    nb = jupytext.reads('# %%\nx = 1\n', fmt="py:percent")
    nb.cells[0].metadata["mystnb"] = {"figure": {"caption": "c"}, "image": {"alt": "a"}}
    nb.metadata["jupytext"] = {"cell_metadata_filter": config.cell_metadata_filter}
    back = jupytext.reads(jupytext.writes(nb, fmt="py:percent"), fmt="py:percent")
    assert back.cells[0].metadata.get("mystnb") == nb.cells[0].metadata["mystnb"]


def test_one_figure_and_one_caption_per_cell():
    """book/_ext/cell_figures.py: panels of one cell share a figure; a table output leaves its figure."""
    from docutils import nodes
    from docutils.utils import new_document

    def figure(mime):
        bundle = nodes.container(nb_element="mime_bundle")
        bundle += nodes.container(mime_type=mime)
        return nodes.figure("", bundle, nodes.caption("", "", nodes.Text("What to see.")))

    doc = new_document("test")
    out = nodes.container(nb_element="cell_code_output")
    for mime in ("text/html", "image/png", "image/png", "image/png"):
        out += figure(mime)
    doc += out
    _load_ext("cell_figures").one_figure_per_cell(None, doc)
    figures = list(doc.findall(nodes.figure))
    assert len(figures) == 1 and len(list(doc.findall(nodes.caption))) == 1
    assert len([b for b in figures[0].children if b.get("nb_element") == "mime_bundle"]) == 3
    assert out.children[0].get("nb_element") == "mime_bundle"  # the table, unwrapped, stays first


def test_helpers_sources_have_no_invalid_escape_sequences():
    """A single backslash in a docstring (``\\nabla`` read as a newline) breaks the API page's -W build."""
    import warnings

    found = []
    for path in sorted((ROOT / "helpers").glob("*.py")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compile(path.read_text(), str(path), "exec")
        found += [f"{path.name}:{w.lineno}: {w.message}" for w in caught]
    assert not found, "double the backslashes (or use a raw string): " + "; ".join(found)
