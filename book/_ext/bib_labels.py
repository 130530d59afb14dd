"""Author-year labels for the bibliography and every citation, the same in both places (issue 15).

The default ``alpha`` labels ([Hai23a]) did not match the author-year citations in the text ([Haink,
2023]), and the thesis and its summary card, same author and year, cited alike. With this style both the
list and the text read [Haink 2023a] / [Haink 2023b]; a letter is added only where author and year repeat.
"""
from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _plain(latex: str) -> str:
    return Text.from_latex(latex).render_as("text")


class AuthorYearLabels(BaseLabelStyle):
    """``Haink 2023``, ``Meng and Yao 2023``, ``Sankar et al. 2021``; ``a``, ``b``, ... on repeats."""

    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [_plain(" ".join(p.last_names)) for p in persons]
        if not last:
            names = _plain(entry.fields.get("title", entry.key)).split(":")[0][:30]
        elif len(last) == 1:
            names = last[0]
        elif len(last) == 2:
            names = f"{last[0]} and {last[1]}"
        else:
            names = f"{last[0]} et al."
        return f"{names} {entry.fields.get('year', 'n.d.')}"

    def format_labels(self, sorted_entries):
        labels = [self.format_label(e) for e in sorted_entries]
        total, seen = Counter(labels), Counter()
        for label in labels:
            if total[label] > 1:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "authoryear"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
