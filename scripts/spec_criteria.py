"""Extract every finding's id, chapter and criterion from the book specification into ``tests/data``.

    python scripts/spec_criteria.py [path/to/BOOK_SPEC.md]     # default: ../shared/BOOK_SPEC.md

The specification lives outside the repository; ``tests/data/spec_findings.json`` keeps the extract so that
``tests/test_spec_findings.py`` can check, on any clone, that each chapter records exactly its findings with
the specification's criterion word for word. Run this after the specification changes and commit the result.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "BOOK_SPEC.md"
OUT = ROOT / "tests" / "data" / "spec_findings.json"


def extract(text: str) -> dict[str, dict]:
    """{finding id: {"chapter": n, "criterion": text}} from the spec's "### Chapter n" sections."""
    found: dict[str, dict] = {}
    chapter, current = None, None
    for line in text.splitlines():
        heading = re.match(r"#+ ", line)
        if heading:
            m = re.match(r"### Chapter (\d+)\b", line)
            chapter, current = (int(m.group(1)) if m else None), None
            continue
        m = re.match(r"- (F-[A-Z0-9]+): (.*)", line)
        if m and chapter is not None:
            current = m.group(1)
            found[current] = {"chapter": chapter, "criterion": m.group(2).strip()}
        elif current and line.startswith("  ") and line.strip():
            found[current]["criterion"] += " " + line.strip()
        else:
            current = None
    return found


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = Path(args[0]) if args else SPEC
    if not spec.exists():
        print(f"no specification at {spec}; pass its path.", file=sys.stderr)
        return 2
    found = extract(spec.read_text())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(found)} findings of {len({f['chapter'] for f in found.values()})} chapters -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
