"""One module per paper: its constants with their source, model wrapper, objective, learner factories and
training recipe per size.

- :mod:`echobook.methods.coreecho`: CoReEcho (Maani et al., MICCAI 2024), with the L1 baseline of its ablation.

Import the module you use (``from echobook.methods import coreecho``); nothing is imported eagerly.
"""
