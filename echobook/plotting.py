"""plotly figures that draw in JupyterLab, in Colab, and in the rendered book with no network.

plotly's default notebook renderers either inline plotly.js into every figure (about
4.8 MB each) or load it from a CDN (blank figures offline). The ``echobook`` renderer
emits two representations of a figure:

- ``application/vnd.plotly.v1+json``, which JupyterLab, Notebook 7 and VS Code draw
  with their built-in plotly extension;
- ``text/html``: a ``<div>`` plus the ``Plotly.newPlot`` call, with no plotly.js. The
  rendered book loads one local copy of plotly.js on the pages that need it (see
  :mod:`echobook.sphinxext`).

Colab shows only ``text/html`` and has no plotly.js, so there the plotly default
(the ``colab`` renderer) stays in charge.
"""
from __future__ import annotations

from echobook.config import in_colab

RENDERER_NAME = "echobook"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _book_renderer_class():
    from plotly.io import to_html
    from plotly.io.base_renderers import MimetypeRenderer

    class BookRenderer(MimetypeRenderer):
        """JSON for Jupyter front ends, a script-free HTML div for the static book."""

        def to_mimebundle(self, fig_dict):
            html = to_html(fig_dict, include_plotlyjs=False, full_html=False,
                           config={"responsive": True, "displaylogo": False})
            return {PLOTLY_MIME: fig_dict, "text/html": html}

    return BookRenderer


def use_book_renderer() -> str:
    """Make the ``echobook`` renderer plotly's default (not on Colab); return the default's name."""
    import plotly.io as pio

    if RENDERER_NAME not in pio.renderers:
        pio.renderers[RENDERER_NAME] = _book_renderer_class()()
    if not in_colab():
        pio.renderers.default = RENDERER_NAME
    return pio.renderers.default
