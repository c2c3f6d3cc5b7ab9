"""Metrics used by every scenario (STUDY.md §7): image level, pixel level, PRO, means."""

from ad_core.metrics.image import ImageMetrics, image_metrics
from ad_core.metrics.pixel import pixel_auroc, pro_curve, pro_score
from ad_core.metrics.summary import macro_mean

__all__ = ["ImageMetrics", "image_metrics", "macro_mean", "pixel_auroc", "pro_curve", "pro_score"]
