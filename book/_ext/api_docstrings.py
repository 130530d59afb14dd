"""Sphinx extension: the helpers' docstrings read as plain text where they use ``|x|`` and ``*shape``,
and cite the source documents as the bibliography does.

The docstrings write norms as ``|x|`` and shapes as ``(B, *S)``, which reStructuredText takes for
substitution references and emphasis (errors under ``-W``). Outside literals, roles and real
``*emphasis*``, this escapes those characters before autodoc renders the docstring (API page, issue 15).
The docstrings name the sources by file number ("000 eq. 2.5"); here they become citations,
[Haink 2023a, eq. 2.5], linked to the bibliography (``helpers.findings.cite_sources``).
"""
from __future__ import annotations

import re

# literals, roles with their argument, interpreted text, emphasis and strong emphasis: left as written
_KEEP = re.compile(r"``.+?``|:[\w:.-]+:`[^`]*`|`[^`]*`_{0,2}|\*\*[^*\s](?:[^*]*[^*\s])?\*\*"
                   r"|(?<![\w*\\])\*[^*\s](?:[^*]*[^*\s])?\*(?![\w*])")


def escape_line(line: str) -> str:
    """Escape ``|`` and stray ``*`` of one docstring line, outside the parts reStructuredText should read."""
    stripped = line.lstrip()
    if stripped.startswith(("| ", "+-", "+=")) or re.fullmatch(r"[=\s]+", stripped or "x"):
        return line  # tables and line blocks
    bullet = re.match(r"(\s*\*\s+)", line)
    head, rest = (bullet.group(1), line[bullet.end():]) if bullet else ("", line)
    out, end = [], 0
    for m in _KEEP.finditer(rest):
        out += [_escape(rest[end:m.start()]), m.group(0)]
        end = m.end()
    return head + "".join(out + [_escape(rest[end:])])


def _escape(text: str) -> str:
    return re.sub(r"(?<!\\)([|*])", r"\\\1", text)


def _process(app, what, name, obj, options, lines):
    from helpers.findings import cite_sources

    if not lines:
        return
    lines[:] = [escape_line(line) for line in cite_sources("\n".join(lines), "rst").split("\n")]


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
