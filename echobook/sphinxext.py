"""Sphinx extension for the rendered book: plotly.js served from the book itself.

Listed in ``_config.yml`` under ``sphinx.extra_extensions``. Figures made with the
``echobook`` renderer (:mod:`echobook.plotting`) carry no plotly.js; this extension
writes the copy that ships inside the installed plotly package to ``_static`` and
adds it only to the pages that hold a plotly figure, so the book draws offline and
pages without figures stay light.
"""
from __future__ import annotations

from pathlib import Path

PLOTLY_JS = "plotly.min.js"
PLOTLY_DIV_CLASS = "plotly-graph-div"


def _add_plotly_js_where_needed(app, pagename, templatename, context, doctree) -> None:
    if PLOTLY_DIV_CLASS in context.get("body", ""):
        # loaded in <head>, before the figures' inline Plotly.newPlot calls run
        app.add_js_file(PLOTLY_JS, priority=200)


def _write_plotly_js(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from plotly.offline import get_plotlyjs

    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    (static / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")


def setup(app):
    app.connect("html-page-context", _add_plotly_js_where_needed)
    app.connect("build-finished", _write_plotly_js)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
