"""Run chapters at several global seeds and tabulate every finding's verdict per seed.

    python scripts/robustness.py                      # every chapter, seeds 0 1 2
    python scripts/robustness.py 02_pca_dynamics 08_two_parameter_curvature --seeds 0 1 2

Each seed gets its own result cache and findings folder under ``_build/robustness/seed<s>/`` (so no seed
reuses another's results), the chapters are executed with nbclient in the quick profile, and the table
finding x seed (verdict and the first measured figure) is written to ``_build/robustness/robustness.json``,
which the reproduction report shows. ``make robustness`` runs this; with ``--record`` the table is also kept
as ``benchmarks/robustness.json`` (a measured record, like BENCHMARKS.md, with the commit and date of each
chapter's runs), which the report shows, with that provenance, when a build has no table of its own; the
chapters run replace theirs in the record and the others keep their rows.
Chapters run in separate invocations are merged: the table is gathered from every seed folder.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "robustness"
RECORD = ROOT / "benchmarks" / "robustness.json"


def git_commit() -> str:
    """The checked-out commit, with "+changes" when helpers/ or nbs_src/ differ from it ("unknown" without git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "helpers", "nbs_src"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def run_chapter(chapter: str, seed: int) -> float:
    """Execute book/chapters/<chapter>.ipynb at the seed in a fresh kernel; returns the wall time."""
    folder = OUT / f"seed{seed}"
    env = dict(os.environ, BOOK_SEED=str(seed), BOOK_CACHE_DIR=str(folder / "cache"),
               BOOK_FINDINGS_DIR=str(folder / "findings"), BOOK_STATIC="1")
    notebook = ROOT / "book" / "chapters" / f"{chapter}.ipynb"
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                          "--ExecutePreprocessor.timeout=1200", "--output-dir", str(folder / "executed"),
                          str(notebook)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if run.returncode != 0:  # the failing cell's traceback is at the end of nbconvert's messages
        raise SystemExit(f"{chapter} failed at seed {seed}:\n{run.stderr[-4000:]}")
    return time.perf_counter() - start


def _number_or_numbers(value) -> bool:
    """A number, or a non-empty list of numbers (booleans are verdict-like, not measurements)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return number(value) or (isinstance(value, list) and bool(value) and all(number(v) for v in value))


def _key_figure(per_seed: dict) -> str:
    """The measured quantity to show: the first number, or list of numbers, that differs between the seeds
    (else the first such quantity, else the first name)."""
    names = list(next(iter(per_seed.values())))
    numeric = [n for n in names if all(_number_or_numbers(m.get(n)) for m in per_seed.values())]
    varying = [n for n in numeric if len({json.dumps(m[n]) for m in per_seed.values()}) > 1]
    return (varying or numeric or names or [""])[0]


def _figure(name: str, value) -> str:
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return f"{name} = [" + ", ".join(f"{v:.3g}" for v in value) + "]"
    return f"{name} = {value:.4g}" if isinstance(value, float) else f"{name} = {value}"


def merge_record(record: dict, new: dict) -> dict:
    """The committed record with the chapters of ``new`` replaced (their rows, times and provenance), so that
    rerunning some chapters updates the record without rerunning the others. Raises ValueError when a chapter
    of ``new`` lacks one of the record's seeds (its row would silently lose that seed)."""
    chapters = set(new["table"])
    wanted = set(map(str, record.get("seeds", [])))
    short = {c: sorted(wanted - {s for per_seed in rows.values() for s in per_seed})
             for c, rows in new["table"].items()}
    short = {c: seeds for c, seeds in short.items() if seeds}
    if short:
        raise ValueError(f"not recorded: {short} lack the record's seeds; rerun them with --seeds "
                         + " ".join(sorted(wanted)))
    keep = lambda d: {k: v for k, v in d.items() if k.split(" seed ")[0] not in chapters}
    table = {**{c: rows for c, rows in record.get("table", {}).items() if c not in chapters}, **new["table"]}
    return {"seeds": sorted(set(record.get("seeds", [])) | set(new["seeds"])),
            "table": dict(sorted(table.items())),
            "seconds": {**keep(record.get("seconds", {})), **new.get("seconds", {})},
            "runs": {**keep(record.get("runs", {})), **new.get("runs", {})}}


def gather(seeds, out=OUT) -> dict:
    """{chapter: {finding id: {seed: {"verdict", "figure", "measured"}}}} from the seeds' findings folders.

    The figure is one measured quantity per finding, the same at every seed: the first number (or list of
    numbers) that differs between the seeds (the one a reader wants to compare), else the first one;
    "measured" keeps every measured quantity, which the chapters' robustness tables read.
    """
    measured: dict = {}
    for seed in seeds:
        for path in sorted((out / f"seed{seed}" / "findings").glob("*/*.json")):
            entry = json.loads(path.read_text())
            for f in entry["findings"]:
                measured.setdefault(entry["chapter"], {}).setdefault(f["id"], {})[str(seed)] = f
    table: dict = {}
    for chapter, rows in measured.items():
        for fid, per_seed in rows.items():
            name = _key_figure({s: f["measured"] for s, f in per_seed.items()})
            table.setdefault(chapter, {})[fid] = {
                s: {"verdict": f["verdict"], "figure": _figure(name, f["measured"].get(name, "")),
                    "measured": f["measured"]}
                for s, f in per_seed.items()}
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("chapters", nargs="*", help="chapter names such as 02_pca_dynamics (default: all)")
    parser.add_argument("--record", action="store_true",
                        help=f"also keep the table as {RECORD.relative_to(ROOT)} (commit it as a measured record)")
    args = parser.parse_args(argv)
    chapters = args.chapters or sorted(p.stem for p in (ROOT / "nbs_src").glob("[0-9][0-9]_*.py"))
    missing = [c for c in chapters if not (ROOT / "book" / "chapters" / f"{c}.ipynb").exists()]
    if missing:
        print(f"no generated notebook for {missing}; run `make notebooks` first.", file=sys.stderr)
        return 2
    previous = json.loads((OUT / "robustness.json").read_text()) if (OUT / "robustness.json").exists() else {}
    times, runs = dict(previous.get("seconds", {})), dict(previous.get("runs", {}))
    commit = git_commit()
    for seed in args.seeds:
        for chapter in chapters:
            name = f"{chapter} seed {seed}"
            times[name] = run_chapter(chapter, seed)
            runs[name] = {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          "load": round(os.getloadavg()[0], 1)}
            print(f"{chapter} at seed {seed}: {times[name]:.0f} s", flush=True)
    seeds = sorted(set(args.seeds) | set(previous.get("seeds", [])))
    data = {"seeds": seeds, "table": gather(seeds), "seconds": times, "runs": runs}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "robustness.json").write_text(json.dumps(data, indent=1))
    if args.record:
        record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        try:
            RECORD.write_text(json.dumps(merge_record(record, data), indent=1) + "\n")
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
    table = data["table"]
    for chapter, rows in table.items():
        for fid, per_seed in rows.items():
            cells = [f"seed {s}: {v['verdict']} ({v['figure']})" for s, v in per_seed.items()]
            print(f"{chapter} {fid}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
