"""One module per paper: its constants with their source, model wrapper, objective, learner factories and
training recipe per size.

- :mod:`echobook.methods.coreecho`: CoReEcho (Maani et al., MICCAI 2024), with the L1 baseline of its ablation.
- :mod:`echobook.methods.echofm`: EchoFM (Kim et al., 2025), periodic masked video pretraining, with plain VideoMAE.
- :mod:`echobook.methods.e3net`: Echo-E3Net (Heidari et al., 2025): landmarks, the Simpson-inspired objective,
  the recipe per size and the saved model with its card.

Import the module you use (``from echobook.methods import coreecho``); nothing is imported eagerly.
"""
