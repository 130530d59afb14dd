"""Generate the book's two derived pages: the reproduction report (from the findings every chapter
wrote while executing) and the helpers API reference (from the docstrings). A page is rewritten only
when its text changes, so the incremental Sphinx rebuild after execution touches just these pages.
"""
from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import config, findings  # noqa: E402

MODULE_ORDER = ["config", "cache", "findings", "plotting", "widgets", "data", "models", "losses", "training",
                "params", "operators", "layer_chain", "eigensolvers", "estimators", "ntk", "geometry",
                "information", "random_matrix", "weight_spectra", "trajectories", "layerwise", "callbacks",
                "distributed"]


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")


def chapter_title(chapter: str) -> str:
    """``"03_random_matrix_theory"`` -> ``"Chapter 3: Random matrix theory of weights"`` (the source's title)."""
    src = ROOT / "nbs_src" / f"{chapter}.py"
    title = chapter
    if src.exists():
        for line in src.read_text().splitlines():
            if line.startswith("# # "):
                title = line[4:].strip()
                break
    number = chapter.split("_", 1)[0]
    if number.isdigit():
        title = re.sub(r"^(Chapter\s+)?\d+[.:]?\s*", "", title)
        return f"Chapter {int(number)}: {title}"
    return title


def report() -> str:
    lines = ["# Reproduction report", "",
             "Every finding of every chapter, gathered from the chapters' own executions: the criterion is "
             "fixed by the book's specification, the measured figure and the verdict are computed when the "
             "chapter runs. *Not reproduced at this scale* is an honest result, not a failure of the build.", ""]
    data = findings.load_all()
    if not data:
        lines += ["No chapter has been executed yet. Run `make book` to fill this page.", ""]
        return "\n".join(lines)
    by_profile: dict[str, list[dict]] = {}
    for entry in data:
        by_profile.setdefault(entry["profile"], []).append(entry)
    for prof in config.PROFILES:
        entries = sorted(by_profile.get(prof, []), key=lambda e: e["chapter"])
        if not entries:
            lines += [f"## Profile `{prof}`", "", "Not run on this build.", ""]
            continue
        total = sum(len(e["findings"]) for e in entries)
        ok = sum(f["verdict"] == findings.REPRODUCED for e in entries for f in e["findings"])
        lines += [f"## Profile `{prof}`", "", f"{ok} of {total} findings reproduced.", ""]
        for e in entries:
            recs = [findings.Finding(**f) for f in e["findings"]]
            lines += [f"### {chapter_title(e['chapter'])} (seed {e['seed']})", "",
                      findings.markdown_table(recs, "myst"), ""]
    return "\n".join(lines + robustness())


def robustness(path: Path = ROOT / "_build" / "robustness" / "robustness.json",
               record: Path = ROOT / "benchmarks" / "robustness.json") -> list[str]:
    """The finding x seed table of ``make robustness`` (scripts/robustness.py): this build's, else the record."""
    lines = ["## Robustness across seeds", ""]
    how = ("`make robustness` executes the chapters at BOOK_SEED = 0, 1 and 2 in separate caches and fills "
           "this table")
    if path.exists():
        data = json.loads(path.read_text())
    elif record.exists():
        data = json.loads(record.read_text())
        lines += [f"Not run for this build ({how}). The table below is the record kept in "
                  f"`{record.relative_to(ROOT) if record.is_relative_to(ROOT) else record.name}`; the commit "
                  "and date of each chapter's runs are listed under it, and a chapter edited since may give "
                  "other figures.", ""]
    else:
        return lines + [f"Not run for this build: {how}.", ""]
    seeds = [str(s) for s in data["seeds"]]
    lines += [f"Each chapter executed at seeds {', '.join(seeds)} (quick profile, one cache per seed). A finding "
              "is *robust* when its verdict is the same at every seed.", "",
              "| chapter | id | " + " | ".join(f"seed {s}" for s in seeds) + " | robust |",
              "|---|---|" + "---|" * len(seeds) + "---|"]
    for chapter, rows in sorted(data["table"].items()):
        for fid, per_seed in rows.items():
            cells = [f"{per_seed[s]['verdict']} ({per_seed[s]['figure']})" if s in per_seed else "not run"
                     for s in seeds]
            verdicts = {per_seed[s]["verdict"] for s in seeds if s in per_seed}
            robust = "yes" if len(verdicts) == 1 and len(per_seed) == len(seeds) else "no"
            lines.append(f"| {chapter} | {fid} | " + " | ".join(c.replace("|", "\\|") for c in cells)
                         + f" | {robust} |")
    runs = data.get("runs", {})
    if runs:
        lines += ["", "| run | seconds (cold) | commit | date | load |", "|---|---|---|---|---|"]
        for name, run in sorted(runs.items()):
            lines.append(f"| {name} | {data['seconds'].get(name, float('nan')):.0f} | `{run['commit']}` | "
                         f"{run['date']} | {run['load']} |")
    return lines + [""]


def api() -> str:
    """The API page: one collapsible section per module, rendered by Sphinx autodoc from the docstrings.

    Napoleon reads the Google-style ``Args:`` / ``Returns:`` sections; the docstrings' reStructuredText
    (``:math:``, ``:func:``, literals) renders as such. Each module's first docstring line heads its section.
    """
    lines = ["# The `helpers` API", "",
             "Rendered from the docstrings of the `helpers` package (`scripts/build_pages.py` lists the modules, "
             "Sphinx autodoc reads them). Each module holds one idea; every public function validates its "
             "arguments and names the chapter that uses it. Open a module to see its functions and classes.", ""]
    present = [p.stem for p in (ROOT / "helpers").glob("*.py") if p.stem != "__init__"]
    for name in [m for m in MODULE_ORDER if m in present] + sorted(set(present) - set(MODULE_ORDER)):
        mod = importlib.import_module(f"helpers.{name}")
        summary = " ".join(inspect.cleandoc(mod.__doc__ or "(no module docstring)").split("\n\n")[0].split())
        lines += [f"## `helpers.{name}`", "", "```{eval-rst}", findings.cite_sources(summary, "rst"), "",
                  f".. dropdown:: The module, its functions and classes", "",
                  f"   .. automodule:: helpers.{name}", "      :members:", "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    write_if_changed(ROOT / "book" / "report.md", report())
    write_if_changed(ROOT / "book" / "api.md", api())
