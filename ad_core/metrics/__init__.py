"""Metrics used by every scenario (docs/protocol.md §7): image level, pixel level, PRO, means."""

from ad_core.metrics.image import ImageMetrics, image_f1_max, image_metrics
from ad_core.metrics.pixel import pixel_auroc, pixel_metrics, pixel_scores, pro_curve, pro_score
from ad_core.metrics.summary import macro_mean

# The one list of metric names, in the order every table shows them: ``image_metrics``
# computes the study's image ones (at tau), ``pixel_scores`` the pixel ones (one sort for all);
# FIELD_METRICS are the field's threshold-free additions (VisA / ADer tables: image F1-max,
# pixel AP, pixel F1-max), after the study's so that every existing column keeps its place.
IMAGE_METRICS = ("image_auroc", "image_auprc", "image_f1", "image_accuracy")
PIXEL_METRICS = ("pixel_auroc", "pro")
FIELD_IMAGE_METRICS = ("image_f1_max",)
FIELD_PIXEL_METRICS = ("pixel_ap", "pixel_f1_max")
FIELD_METRICS = (*FIELD_IMAGE_METRICS, *FIELD_PIXEL_METRICS)
METRIC_NAMES = (*IMAGE_METRICS, *PIXEL_METRICS, *FIELD_METRICS)

__all__ = ["FIELD_IMAGE_METRICS", "FIELD_METRICS", "FIELD_PIXEL_METRICS", "IMAGE_METRICS", "METRIC_NAMES",
           "PIXEL_METRICS", "ImageMetrics", "image_f1_max", "image_metrics", "macro_mean", "pixel_auroc",
           "pixel_metrics", "pixel_scores", "pro_curve", "pro_score"]
