"""Sphinx extension: one figure and one caption per code cell, however many outputs the cell has.

A code cell's caption and alt text live in its metadata (``mystnb: {figure: {caption: ...}, image: {alt:
...}}``). myst-nb 1.x wraps *every* display output of such a cell in its own figure with that caption, so a
cell that draws three static widget panels shows the caption three times, and a cell that prints a table
before its plot puts the table in a figure too. After myst-nb has read a page this

- unwraps the figures that hold no image (tables, Markdown): they keep their content and lose the caption;
- merges adjacent image figures of one cell into the last of them, so the panels share one ``<figure>``
  and one ``<figcaption>``;
- keeps the caption only on the cell's last figure, should its images be split by other outputs.

Figure names (``mystnb.figure.name``) are left to myst-nb; give one only to a cell with a single figure.
"""
from __future__ import annotations

from docutils import nodes


def _element(node, kind: str) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == kind


def _has_image(figure: nodes.figure) -> bool:
    """Whether the myst-nb figure holds an image output (its mime bundle offers an image/* type)."""
    return any(str(mime.get("mime_type", "")).startswith("image/")
               for bundle in figure.findall(lambda n: _element(n, "mime_bundle"))
               for mime in bundle.children)


def _body(figure: nodes.figure) -> list[nodes.Node]:
    return [c for c in figure.children if not isinstance(c, (nodes.caption, nodes.legend))]


def one_figure_per_cell(app, doctree: nodes.document) -> None:
    for output in list(doctree.findall(lambda n: _element(n, "cell_code_output"))):
        for figure in [c for c in output.children if isinstance(c, nodes.figure) and not _has_image(c)]:
            figure.replace_self(_body(figure))
        figures = [c for c in output.children if isinstance(c, nodes.figure)]
        for figure in reversed(figures[:-1]):
            following = output.children[output.index(figure) + 1]
            if any(following is f for f in figures):  # adjacent panels: one figure, the caption of the last
                for k, child in enumerate(_body(figure)):
                    following.insert(k, child)
                output.remove(figure)
            else:
                for child in figure.children[:]:
                    if isinstance(child, (nodes.caption, nodes.legend)):
                        figure.remove(child)


def setup(app):
    app.connect("doctree-read", one_figure_per_cell)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
