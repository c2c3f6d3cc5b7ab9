"""Metrics used by every scenario (docs/protocol.md §7): image level, pixel level, PRO, means."""

from ad_core.metrics.image import ImageMetrics, image_metrics
from ad_core.metrics.pixel import pixel_auroc, pixel_metrics, pro_curve, pro_score
from ad_core.metrics.summary import macro_mean

# The one list of metric names, in the order every table shows them: ``image_metrics``
# computes the image ones (at tau), ``pixel_metrics`` the pixel ones (one sort for both).
IMAGE_METRICS = ("image_auroc", "image_auprc", "image_f1", "image_accuracy")
PIXEL_METRICS = ("pixel_auroc", "pro")
METRIC_NAMES = (*IMAGE_METRICS, *PIXEL_METRICS)

__all__ = ["IMAGE_METRICS", "METRIC_NAMES", "PIXEL_METRICS", "ImageMetrics", "image_metrics", "macro_mean",
           "pixel_auroc", "pixel_metrics", "pro_curve", "pro_score"]
