"""Metrics used by every scenario (docs/protocol.md §7): image level, pixel level, PRO, means, and the
registry of metric records (``METRICS``: one record per metric, ``catalog`` declares the study's)."""

from ad_core.metrics import catalog
from ad_core.metrics.image import ImageMetrics, image_metrics
from ad_core.metrics.pixel import pixel_metrics, pixel_scores, pro_curve, pro_score
from ad_core.metrics.registry import (
    METRICS,
    EvaluationSet,
    Metric,
    evaluate_metrics,
    evaluated,
    metric,
    metric_names,
    of_levels,
    recorded_names,
    register,
    unregister,
)
from ad_core.metrics.summary import macro_mean

__all__ = ["METRICS", "EvaluationSet", "ImageMetrics", "Metric", "catalog", "evaluate_metrics", "evaluated",
           "image_metrics", "macro_mean", "metric", "metric_names", "of_levels",
           "pixel_metrics", "pixel_scores", "pro_curve", "pro_score", "recorded_names", "register", "unregister"]
