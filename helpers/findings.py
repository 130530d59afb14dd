"""The findings registry: every chapter records its findings here, with a verdict computed from the
measurement, prints its table at the end, and files it where the reproduction report gathers it.

A finding (``BOOK_SPEC.md`` section 3) has an id (``F-OUT``), a source, a criterion fixed by the spec,
a measured figure, and a verdict: *reproduced* or *not reproduced at this scale*. The verdict is never
typed by hand: :func:`record` takes the measurement and a rule (a function of the measurement) and
evaluates it.

Used by every chapter (``helpers.findings.record(...)`` where a finding is measured,
``helpers.findings.table()`` in the last cell) and by ``scripts/build_report.py``.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import config

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced at this scale"


@dataclass
class Finding:
    id: str
    source: str
    criterion: str
    measured: dict
    verdict: str
    chapter: str = ""
    profile: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def reproduced(self) -> bool:
        return self.verdict == REPRODUCED


_state: dict[str, Any] = {"chapter": None, "records": {}}


def start_chapter(chapter: str) -> None:
    """Begin a chapter's registry (called by ``helpers.setup``)."""
    if not chapter or not isinstance(chapter, str):
        raise ValueError("start_chapter needs the chapter id, e.g. '01_sgd_basics'.")
    _state["chapter"] = chapter
    _state["records"] = {}


def _format_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_format_value(x) for x in v) + "]"
    if isinstance(v, dict):  # nested measurements: every number rounded like the top level
        return "{" + ", ".join(f"{k}: {_format_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _plain(v: Any) -> Any:
    """NumPy scalars/arrays to JSON-friendly Python values."""
    try:
        import numpy as np

        if isinstance(v, np.ndarray):
            return [_plain(x) for x in v.tolist()]
        if isinstance(v, np.generic):
            return v.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def record(id: str, source: str, criterion: str, measured: Mapping[str, Any] | float,
           rule: Callable[[Any], bool], note: str = "", show: bool = True) -> Finding:
    """Record a finding; its verdict is ``rule(measured)``.

    Args:
        id: the spec's id, verbatim (``"F-OUT"``).
        source: where the source reports it (``"000 Sec. 7.2"``).
        criterion: the spec's criterion in words.
        measured: the measured figure(s): a number or a dict of named numbers.
        rule: a function of ``measured`` returning True when the criterion holds.
        note: optional remark (e.g. what limits the small-scale experiment).
    Returns:
        the :class:`Finding`, also kept for :func:`table` and written to the findings folder.
    """
    if not isinstance(id, str) or not id.startswith("F-"):
        raise ValueError(f"finding ids look like 'F-OUT' (from BOOK_SPEC.md); got {id!r}.")
    if not callable(rule):
        raise TypeError("rule must be a function of the measurement returning True/False.")
    if _state["chapter"] is None:
        raise RuntimeError("no chapter started: call helpers.setup('0N_name', ...) first.")
    measured_dict = dict(measured) if isinstance(measured, Mapping) else {"value": measured}
    measured_dict = _plain(measured_dict)
    verdict_bool = rule(measured if not isinstance(measured, Mapping) else measured_dict)
    try:
        import numpy as np

        if isinstance(verdict_bool, np.bool_):
            verdict_bool = bool(verdict_bool)
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(verdict_bool, bool):
        raise TypeError(f"the rule for {id} must return a bool, got {type(verdict_bool).__name__}.")
    f = Finding(id=id, source=source, criterion=criterion, measured=measured_dict,
                verdict=REPRODUCED if verdict_bool else NOT_REPRODUCED,
                chapter=_state["chapter"], profile=config.profile(), note=note)
    _state["records"][id] = f
    _write()
    if show:
        print(f"{id}: {f.verdict}  (measured: {describe(f)}; criterion: {criterion})")
    return f


def get(id: str) -> Finding:
    """The finding recorded under ``id`` in the current chapter."""
    try:
        return _state["records"][id]
    except KeyError:
        raise KeyError(f"no finding {id!r} recorded in this chapter yet; recorded: {sorted(_state['records'])}") from None


def describe(f: Finding) -> str:
    return "; ".join(f"{k} = {_format_value(v)}" for k, v in f.measured.items())


def _write() -> None:
    """Write the chapter's findings atomically as JSON for the reproduction report."""
    chapter = _state["chapter"]
    folder = config.findings_dir() / config.profile()
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"chapter": chapter, "profile": config.profile(), "seed": config.global_seed(),
               "findings": [asdict(f) for f in _state["records"].values()]}
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=1)
    os.replace(tmp, folder / f"{chapter}.json")


def rows(records: list[Finding] | None = None) -> list[list[str]]:
    recs = list(_state["records"].values()) if records is None else records
    return [[f.id, f.source, f.criterion, describe(f), f.verdict] for f in recs]


def markdown_table(records: list[Finding] | None = None) -> str:
    """The findings as a Markdown table (id, source, criterion, measured, verdict)."""
    out = ["| id | source | criterion | measured | verdict |", "|---|---|---|---|---|"]
    for r in rows(records):
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


#: where ``make robustness --record`` keeps its finding x seed table (in a clone of the repository)
ROBUSTNESS_RECORD = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.json"


def seed_verdicts(chapter: str, record: Path | str | None = None) -> tuple[list[str], dict[str, list[str]], str]:
    """The verdicts of a chapter's findings at every recorded seed, from the record of ``make robustness``.

    Args:
        chapter: the chapter's name, e.g. ``"04_hessian"``.
        record: the record file (default :data:`ROBUSTNESS_RECORD`).
    Returns:
        ``(seeds, {finding id: ["yes" | "no" | "not run", ...] per seed}, provenance)``, where provenance names
        the commits and dates of the chapter's runs; ``([], {}, "")`` when there is no record for the chapter.
    """
    path = Path(ROBUSTNESS_RECORD if record is None else record)
    try:
        data = json.loads(path.read_text())
        rows_ = data["table"][chapter]
        seeds = [str(x) for x in data["seeds"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return [], {}, ""
    short = {REPRODUCED: "yes", NOT_REPRODUCED: "no"}
    table_ = {fid: [short.get(per.get(s, {}).get("verdict"), "not run") for s in seeds] for fid, per in rows_.items()}
    runs = {k: v for k, v in data.get("runs", {}).items() if k.startswith(chapter + " ")}
    commits = sorted({r.get("commit", "?") for r in runs.values()})
    dates = sorted(r.get("date", "") for r in runs.values())
    provenance = (f"commit {', '.join(commits)}, {dates[0][:10]}" if runs else "commit unknown")
    return seeds, table_, provenance


def table() -> None:
    """Display the chapter's findings table (HTML in the book, Markdown in plain front ends).

    When the record of ``make robustness`` (:func:`seed_verdicts`) covers the chapter and this is the quick
    profile, a last column gives each finding's verdict at every recorded seed, and a line under the table says
    which commit that record was measured on. Returns None, so a cell ending with ``findings.table()`` shows
    the table once; the text itself is :func:`markdown_table`.
    """
    from .plotting import show_table

    header, body = ["id", "source", "criterion", "measured", "verdict"], rows()
    seeds, by_seed, provenance = seed_verdicts(_state["chapter"] or "") if config.profile() == "quick" else ([], {}, "")
    if seeds:
        header.append(f"verdicts at BOOK_SEED = {', '.join(seeds)} (recorded)")
        body = [r + [" / ".join(by_seed.get(r[0], ["not run"] * len(seeds)))] for r in body]
    # HTML in the built book (its Markdown renderer has no tables), Markdown in plain front ends
    show_table(header, body)
    if seeds:
        print(f"The last column is the record of `make robustness` ({provenance}): the chapter run at every seed "
              "with its own cache. A finding whose verdict differs between seeds is not decided at this scale; "
              "the reproduction report gives the measured figures.")


def load_all(folder=None) -> list[dict]:
    """Every chapter's findings file under the findings folder, for every profile that was run."""
    folder = config.findings_dir() if folder is None else folder
    out = []
    for path in sorted(folder.glob("*/*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out
