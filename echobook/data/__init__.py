"""Datasets: the synthetic echo engine, readers and writers of the public formats, geometry.

Submodules are imported on use (``from echobook.data import synthetic``) so that importing
the package stays cheap.
"""
