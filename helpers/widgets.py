"""Interactive controls that degrade to a static grid of panels in the built book.

When a reader runs a chapter live (JupyterLab, ``make lab``), :func:`explore` shows ipywidgets sliders
and redraws on change. When the book is built or tested (``BOOK_STATIC=1``, set by the Makefile), it draws
the same plot for a few preset values, one panel each, so the static page is never blank.

Used by every chapter's widget.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence


def is_static() -> bool:
    """True while the book is being built or tested (``BOOK_STATIC=1``)."""
    return os.environ.get("BOOK_STATIC", "0") == "1"


def _make_control(name: str, spec):
    import ipywidgets as w

    if isinstance(spec, w.ValueWidget):
        return spec
    if isinstance(spec, tuple) and len(spec) in (3, 4) and all(isinstance(x, (int, float)) for x in spec[:3]):
        lo, hi, step = spec[:3]
        value = spec[3] if len(spec) == 4 else lo
        cls = w.IntSlider if all(isinstance(x, int) for x in (lo, hi, step, value)) else w.FloatSlider
        return cls(min=lo, max=hi, step=step, value=value, description=name, continuous_update=False)
    if isinstance(spec, (list, tuple)) and spec:
        return w.Dropdown(options=list(spec), value=spec[0], description=name)
    raise ValueError(f"control {name!r}: give (min, max, step[, value]) for a slider or a list of options, got {spec!r}.")


def explore(plot: Callable, controls: Mapping[str, object], presets: Sequence[Mapping[str, object]],
            panels: int = 1, width: float = 4.2, height: float = 3.3, title: Callable | None = None):
    """Show ``plot(axes, **values)`` with live controls, or for each preset in the static book.

    Args:
        plot: draws on ``axes`` (one Axes when ``panels == 1``, else an array of ``panels`` Axes).
        controls: name -> (min, max, step[, initial]) for a slider, or a list of options.
        presets: the values drawn in the static book, one row of panels each (2-6 is plenty).
        panels: how many axes one call of ``plot`` draws on.
        title: optional function of the values giving a row title.
    """
    import matplotlib.pyplot as plt

    from .plotting import subplots

    if not presets:
        raise ValueError("explore needs at least one preset so the static book shows something.")
    for p in presets:
        unknown = set(p) - set(controls)
        if unknown:
            raise ValueError(f"preset {dict(p)} names unknown controls {sorted(unknown)}; controls are {sorted(controls)}.")
    if is_static():
        for values in presets:
            fig, axes = subplots(1, panels, width=width, height=height, squeeze=False)
            axes = axes[0]
            plot(axes[0] if panels == 1 else axes, **values)
            if title is not None:
                fig.suptitle(title(values))
            plt.show()
        return None
    import ipywidgets as w
    from IPython.display import display

    widgets = {name: _make_control(name, spec) for name, spec in controls.items()}
    for name, value in presets[0].items():
        widgets[name].value = value
    out = w.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            fig, axes = subplots(1, panels, width=width, height=height, squeeze=False)
            axes = axes[0]
            values = {n: c.value for n, c in widgets.items()}
            plot(axes[0] if panels == 1 else axes, **values)
            if title is not None:
                fig.suptitle(title(values))
            plt.show()

    for c in widgets.values():
        c.observe(redraw, names="value")
    box = w.VBox([w.HBox(list(widgets.values())), out])
    display(box)
    redraw()
    return box
