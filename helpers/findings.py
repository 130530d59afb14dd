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
import re
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
        print(f"{id}: {f.verdict}  (measured: {describe(f)}; criterion: {cite_sources(criterion)})")
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


#: the five source documents (``../shared/seeds``) by file number: bibliography key, the label the bibliography
#: gives them (``book/_ext/bib_labels.py``) and the name a sentence calls them by
SOURCES = {"000": ("haink2023hessian", "Haink 2023a", "Haink"),
           "001": ("haink2023card", "Haink 2023b", "Haink's summary card"),
           "002": ("meng2023impact", "Meng and Yao 2023", "Meng and Yao"),
           "003": ("sankar2021deeper", "Sankar et al. 2021", "Sankar et al."),
           "004": ("sauter2023fisher", "Sauter 2023", "Sauter")}
_NUMBER = r"(?:\([0-9A-Z][0-9A-Za-z.]*\)|[0-9A-Z](?:[0-9A-Za-z.]*[0-9A-Za-z])?)"
_LOCATOR = (r"(?:Secs?|eqs?|Tables?|Figs?|Ch|App|appendix|Algorithm|slides?|p)\.?\s+" + _NUMBER
            + r"(?:\s*(?:-|–|,|and)\s*" + _NUMBER.replace("[0-9A-Z]", "[0-9]") + r"(?![0-9A-Za-z]))*")
_SOURCE = re.compile(r"(?P<open>\()?(?<![0-9,.\w`$-])(?P<doc>00[0-4])(?![0-9,.]\d|\w)(?P<poss>'s)?"
                     r"(?:(?P<sep>\s+\(?)(?P<loc>" + _LOCATOR + r"))?(?P<close>\))?")
#: mathematics and code spans (``code``, `code`, $x$, $$...$$, environments): a citation cannot go there
_PROTECTED = re.compile(r"(\$\$.*?\$\$|\\begin\{(\w+\*?)\}.*?\\end\{\2\}|\$[^$\n]+\$|``.+?``|`[^`\n]*`)", re.S)
_ROLES = {"myst": "{cite}", "rst": ":cite:"}  # the citation role of each markup


def cite_sources(text: str, style: str = "text") -> str:
    """Turn the sources' file numbers ("000 Sec. 5.2", "(004 eq. 3.1.3)", "002's") into citations.

    Args:
        text: prose, a finding's source or criterion, or a docstring.
        style: ``"text"`` (plain, for outputs): ``000 eq. 2.6`` -> ``Haink 2023a, eq. 2.6``, the label the
            bibliography lists it under; ``"myst"``: ``{cite}`haink2023hessian{eq. 2.6}``` (the reproduction
            report); ``"rst"``: ``:cite:`haink2023hessian{eq. 2.6}``` (docstrings on the API page). The two
            roles show as [Haink 2023a, eq. 2.6], linked to the bibliography.
    Returns:
        the text with every source number replaced; a possessive becomes the author's name (``002's`` ->
        ``Meng and Yao's``), and mathematics and code spans are left as they are.
    """
    if style not in ("text", *_ROLES):
        raise ValueError(f"style must be 'text', 'myst' or 'rst', got {style!r}.")

    def one(m: re.Match) -> str:
        key, label, name = SOURCES[m["doc"]]
        opened, closed, loc, sep = m["open"] or "", m["close"] or "", m["loc"], m["sep"] or ""
        if m["poss"]:
            return opened + name + "'s" + (sep + loc if loc else "") + closed
        if style == "text":
            if loc and sep.strip() == "(":  # "000 (Sec. 6.3)"
                return opened + label + sep + loc + closed
            return opened + label + (f", {loc}" if loc else "") + closed
        cite = _ROLES[style] + f"`{key}" + (f"{{{loc}}}" if loc else "") + "`"
        if loc and sep.strip() == "(":  # "000 (Sec. 6.3)": the locator's own parenthesis
            return opened + cite
        return cite if opened and closed else opened + cite + closed  # "(000 eq. 2.6)": brackets replace ()

    out, end = [], 0
    for m in _PROTECTED.finditer(text):
        out += [_SOURCE.sub(one, text[end:m.start()]), m.group(0)]
        end = m.end()
    out = "".join(out + [_SOURCE.sub(one, text[end:])])
    if style == "text":
        return out
    role = re.escape(_ROLES[style])
    return re.sub(rf"({role}`([a-z0-9]+)`) {role}`\2`", r"\1", out)  # "`x` (004)" said it twice


def rows(records: list[Finding] | None = None, style: str = "text") -> list[list[str]]:
    """The findings as table rows (id, source, criterion, measured, verdict), sources cited in ``style``."""
    recs = list(_state["records"].values()) if records is None else records
    return [[f.id, cite_sources(f.source, style), cite_sources(f.criterion, style), describe(f), f.verdict]
            for f in recs]


def markdown_table(records: list[Finding] | None = None, style: str = "text") -> str:
    """The findings as a Markdown table (id, source, criterion, measured, verdict); ``style`` as in
    :func:`cite_sources` (``"myst"`` links the sources in a MyST page)."""
    out = ["| id | source | criterion | measured | verdict |", "|---|---|---|---|---|"]
    for r in rows(records, style):
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


#: where ``make robustness --record`` keeps its finding x seed table (in a clone of the repository)
ROBUSTNESS_RECORD = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.json"


def _recorded(chapter: str, record: Path | str | None) -> tuple[dict | None, dict, list[str]]:
    """(the whole record, the chapter's rows, the seeds as strings); (None, {}, []) without a record."""
    path = Path(ROBUSTNESS_RECORD if record is None else record)
    try:
        data = json.loads(path.read_text())
        return data, data["table"][chapter], [str(x) for x in data["seeds"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None, {}, []


def _provenance(data: dict, chapter: str) -> str:
    """The commits and first date of a chapter's runs in a robustness record."""
    runs = {k: v for k, v in data.get("runs", {}).items() if k.startswith(chapter + " ")}
    commits = sorted({r.get("commit", "?") for r in runs.values()})
    dates = sorted(r.get("date", "") for r in runs.values())
    return f"commit {', '.join(commits)}, {dates[0][:10]}" if runs else "commit unknown"


def seed_verdicts(chapter: str, record: Path | str | None = None) -> tuple[list[str], dict[str, list[str]], str]:
    """The verdicts of a chapter's findings at every recorded seed, from the record of ``make robustness``.

    Args:
        chapter: the chapter's name, e.g. ``"04_hessian"``.
        record: the record file (default :data:`ROBUSTNESS_RECORD`).
    Returns:
        ``(seeds, {finding id: ["yes" | "no" | "not run", ...] per seed}, provenance)``, where provenance names
        the commits and dates of the chapter's runs; ``([], {}, "")`` when there is no record for the chapter.
    """
    data, rows_, seeds = _recorded(chapter, record)
    if data is None:
        return [], {}, ""
    short = {REPRODUCED: "yes", NOT_REPRODUCED: "no"}
    table_ = {fid: [short.get(per.get(s, {}).get("verdict"), "not run") for s in seeds] for fid, per in rows_.items()}
    return seeds, table_, _provenance(data, chapter)


def seed_figures(chapter: str, record: Path | str | None = None) -> dict[str, str]:
    """The recorded key figure at every seed of each finding whose verdict differs between the seeds.

    Args:
        chapter: the chapter's name, e.g. ``"08_two_parameter_curvature"``.
        record: the record file (default :data:`ROBUSTNESS_RECORD`).
    Returns:
        ``{finding id: "name = a / b / c"}`` (the figure of seeds 0, 1, 2 in the record's order) for the
        findings that flip; empty when there is no record or nothing flips.
    """
    data, rows_, seeds = _recorded(chapter, record)
    out = {}
    for fid, per in rows_.items():
        cells = [per.get(s) for s in seeds]
        if len({c.get("verdict") for c in cells if c}) < 2:
            continue
        figures = [str(c.get("figure", "")) if c else "not run" for c in cells]
        parts = [f.rpartition(" = ") for f, c in zip(figures, cells) if c]
        names = {name if sep else None for name, sep, _ in parts}
        if len(names) == 1 and None not in names:  # one quantity: "name = a / b / c"
            figures = [f.rpartition(" = ")[2] if c else f for f, c in zip(figures, cells)]
            out[fid] = f"{names.pop()} = " + " / ".join(figures)
        else:
            out[fid] = " / ".join(figures)
    return out


def seed_measurements(chapter: str, quantities: Mapping[str, list[str]],
                      record: Path | str | None = None) -> str:
    """A Markdown table of chosen measured quantities of some findings at every recorded seed.

    The chapters' robustness paragraphs show this instead of figures typed into the prose, so that the
    numbers are those of the last ``make robustness --record`` and change when it is rerun.

    Args:
        chapter: the chapter's name, e.g. ``"04_hessian"``.
        quantities: ``{finding id: [names of measured quantities]}``; each finding gets a verdict row and
            one row per quantity.
        record: the record file (default :data:`ROBUSTNESS_RECORD`).
    Returns:
        The table (one column per seed) followed by its provenance (commits, date, profile), or one sentence
        saying that the record has no runs of the chapter, when there are none.
    Raises:
        ValueError: when ``quantities`` is empty, names a finding id that is not a string like ``F-OUT``, or
            names a quantity that the record's runs of that finding did not measure.
    """
    if not quantities or not all(isinstance(k, str) and k.startswith("F-") for k in quantities):
        raise ValueError(f"quantities must map finding ids such as 'F-OUT' to lists of measured names, "
                         f"got {quantities!r}.")
    data, rows_, seeds = _recorded(chapter, record)
    if data is None or not rows_:
        return (f"*The robustness record has no runs of `{chapter}` yet: `make robustness` runs the chapter "
                "at BOOK_SEED = 0, 1 and 2 and `scripts/robustness.py --record` keeps the result.*")
    out = ["| finding | quantity | " + " | ".join(f"seed {s}" for s in seeds) + " |",
           "|---|---|" + "---|" * len(seeds)]
    for fid, names in quantities.items():
        per = rows_.get(fid, {})
        cells = [per.get(s) for s in seeds]
        recorded = set().union(*(c.get("measured", {}) for c in cells if c))
        unknown = [n for n in names if recorded and n not in recorded]
        if unknown:
            raise ValueError(f"{fid} has no measured quantity {unknown} in the record; it has "
                             f"{sorted(recorded)}.")
        # a non-breaking hyphen keeps the id on one line in a narrow column
        out.append(f"| {fid.replace('-', chr(0x2011))} | verdict | " + " | ".join(
            (c["verdict"] if c else "not run") for c in cells) + " |")
        for name in names:
            values = [_format_value(c["measured"][name]) if c and name in c.get("measured", {})
                      else "not recorded" for c in cells]
            out.append(f"| | {name} | " + " | ".join(v.replace("|", "\\|") for v in values) + " |")
    return ("\n".join(out)
            + f"\n\nQuick profile; from the robustness record ({_provenance(data, chapter)}).")


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
        figures = seed_figures(_state["chapter"] or "")
        header.append(f"verdicts at BOOK_SEED = {', '.join(seeds)} (recorded)")
        body = [r + [" / ".join(by_seed.get(r[0], ["not run"] * len(seeds)))
                     + (f" ({figures[r[0]]})" if r[0] in figures else "")] for r in body]
    # HTML in the built book (its Markdown renderer has no tables), Markdown in plain front ends
    show_table(header, body)
    if seeds:
        print(f"The last column is the record of `make robustness` ({provenance}): the chapter run at every seed "
              "with its own cache. A finding whose verdict differs between seeds is not decided at this scale; "
              "its cell gives the recorded key figure at each seed, the reproduction report all of them.")


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
