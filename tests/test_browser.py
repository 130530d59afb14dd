"""The built book in a real browser: every page opened in headless Chromium (scripts/check_pages.py).

The page check needs Debian's ``chromium`` (``.ci/run`` installs it) and a built book (``make book``; CI builds
the book before it runs the tests). Without either the tests say so and skip. The fixture test shows that
the check fails on the defects it looks for.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_pages", ROOT / "scripts" / "check_pages.py")
check_pages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_pages)

needs_chromium = pytest.mark.skipif(check_pages.find_chromium() is None,
                                    reason="no Chromium on this machine: apt-get install chromium (.ci/run does)")


@needs_chromium
def test_the_check_catches_raw_tex_pipe_tables_broken_images_outside_requests_and_overflow(tmp_path, monkeypatch):
    (tmp_path / "index.html").write_text("<html><body><main><p>ok</p></main></body></html>")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plt.imsave(tmp_path / "wide.png", np.zeros((40, 800)), cmap="gray")  # a figure 800 px wide
    (tmp_path / "bad.html").write_text(
        "<html><body><main><p>The loss \\(L(w)\\) and $x$.</p><p>| a | b |</p><p>|---|---|</p>"
        "<img src='missing.png'><img src='http://example.invalid/x.png'>"
        "<img src='wide.png' style='width:400px' alt='shrunk to half its size'>"
        "<div style='width:3000px'>wide</div><details><pre style='width:300px;overflow-x:auto'>"
        + "x = 1  # " * 40 + "</pre></details><script>console.error('a failing script')</script>"
        "<script>undefined_function()</script></main></body></html>")
    (tmp_path / "good.html").write_text(
        "<html><body><main><p>Plain text that costs $5 and 6 dollars.</p><pre>$$ a code block $$</pre>"
        "<div style='overflow-x:auto'><div style='width:3000px'>scrolls in its own box</div></div>"
        "<img src='wide.png' alt='shown at its natural size'></main></body></html>")
    chapters = tmp_path / "book" / "chapters"
    chapters.mkdir(parents=True)
    for name, alt in (("01_demo", ""), ("02_demo", " alt='A line rising to the right.'")):
        (chapters / f"{name}.html").write_text(f"<html><body><main><img src='../../wide.png'{alt}>"
                                               "</main></body></html>")
    reports = check_pages.check(tmp_path, pages=["bad.html", "good.html", "book/chapters/01_demo.html",
                                                 "book/chapters/02_demo.html"])
    alt_found = {page: check_pages.problems(rep, page) for page, rep in reports.items() if "chapters" in page}
    assert [bool(v) for v in alt_found.values()] == [True, False], alt_found
    assert "without alt text" in alt_found["book/chapters/01_demo.html"][0]
    found = " ".join(check_pages.problems(reports["bad.html"]))
    for what in ("unrendered TeX", "pipe text", "did not load", "outside the book", "overflows sideways",
                 "below 80% of their natural size", "console error", "sideways scrolling"):
        assert what in found, f"the check missed: {what}"
    errors = " ".join(reports["bad.html"]["errors"])
    assert "a failing script" in errors and "undefined_function" in errors, errors
    assert check_pages.problems(reports["good.html"]) == []
    assert [round(f["ratio"], 2) for f in reports["good.html"]["figures"]] == [1.0]
    assert "1 figures" in check_pages.figure_summary(reports["good.html"])


@needs_chromium
def test_every_page_of_the_built_book_reads_cleanly():
    html = ROOT / "_build" / "html"
    if not (html / "index.html").exists():
        pytest.skip("the book is not built: run `make book` first (CI builds it before the tests)")
    reports = check_pages.check(html, screenshots=ROOT / "_build" / "screenshots")
    bad = {page: check_pages.problems(rep, page) for page, rep in reports.items()
           if check_pages.problems(rep, page)}
    assert len(reports) >= 5
    for page, rep in sorted(reports.items()):  # shown with -s, and in the failure message below
        print(f"{page}: {check_pages.figure_summary(rep)}")
    assert not bad, "pages with problems:\n" + "\n".join(f"{p}: {'; '.join(v)}" for p, v in bad.items())
