"""Generate book/chapters/*.ipynb from the Jupytext sources in nbs_src/ (the only source of a chapter).

A notebook is rewritten only when its source changed, so jupyter-cache and editors see stable files;
notebooks whose source was removed are deleted. Every notebook gets the portable kernel name
``python3`` (never a machine-specific one).
"""
from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
SRC, OUT = ROOT / "nbs_src", ROOT / "book" / "chapters"
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    sources = sorted(SRC.glob("[0-9][0-9]_*.py"))
    if not sources:
        print(f"no chapters found in {SRC}", file=sys.stderr)
        return 1
    for src in sources:
        nb = jupytext.read(src, fmt="py:percent")
        nb.metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
        for i, cell in enumerate(nb.cells):  # stable ids: an unchanged source gives a byte-identical notebook
            cell.id = f"{src.stem[:2]}-{i:03d}"
        target = OUT / f"{src.stem}.ipynb"
        text = nbformat.writes(nb)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"generated {target.relative_to(ROOT)}")
    wanted = {s.stem for s in sources}
    for stale in OUT.glob("*.ipynb"):
        if stale.stem not in wanted:
            stale.unlink()
            print(f"removed {stale.relative_to(ROOT)} (its source is gone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
