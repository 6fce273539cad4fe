"""Looking inside trained models: embeddings and their projections, Grad-CAM for video, widgets.

- :mod:`echobook.interpret.embeddings`: per-video encoder embeddings, UMAP/PCA, continuity scores;
- :mod:`echobook.interpret.gradcam`: Grad-CAM on UniFormer stages, focus on the LV;
- :mod:`echobook.interpret.widgets`: the embedding explorer and the heatmap player, live and static;
- :mod:`echobook.interpret.shift`: spotting distribution shift without labels (Mahalanobis and kNN distances to
  in-distribution features, model-free image statistics, AUROC).

Names are loaded on first use (PEP 562), so importing this package stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "embeddings": ["Embeddings", "extract_embeddings", "pca_projection", "umap_projection", "project",
                   "continuity_scores", "knn_ef_mae", "spearman_abs_rho", "trustworthiness"],
    "gradcam": ["EFOutput", "VideoCAM", "ef_targets", "uniformer_target_layer", "uniformer_stage_layers",
                "video_gradcam", "focus_scores", "clip_labels"],
    "widgets": ["EmbeddingExplorer", "HeatmapPlayer", "cam_overlay", "gradcam_clip_source", "stage_cams"],
    "shift": ["MahalanobisDetector", "detection_auroc", "image_statistics", "knn_distance"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
