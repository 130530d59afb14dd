"""Sphinx extension: include every script of a page once.

Jupyter Book 1 (sphinx-thebe 0.3, sphinx-togglebutton 0.4 under Sphinx 7) registers two inline scripts twice,
so every page declares ``const THEBE_JS_URL`` twice and the browser reports a SyntaxError on each page load.
This drops repeated entries (same file, same inline body) from the page's script list before rendering.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        # the repeated copies differ only in filename None versus "" (both mean "inline")
        key = (getattr(script, "filename", script) or "", tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: later handlers (MathJax's) append to this very list


def setup(app):
    app.connect("html-page-context", _dedupe, priority=100)  # early: a later handler may end the event
    return {"parallel_read_safe": True, "parallel_write_safe": True}
