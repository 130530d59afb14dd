"""Chapters 4 and 8: every code line fits the 94-character box of the rendered page (issue 15)."""
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 94


@pytest.mark.parametrize("name", ["04_hessian", "08_two_parameter_curvature"])
def test_code_lines_fit_the_text_column(name):
    nb = jupytext.read(ROOT / "nbs_src" / f"{name}.py", fmt="py:percent")
    long = [(i, line) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > LIMIT]
    assert not long, f"{len(long)} code lines over {LIMIT} characters, first: {long[0]}"
