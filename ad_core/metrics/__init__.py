"""Metrics used by every scenario (docs/protocol.md §7): image level, pixel level, PRO, means, and the
registry of metric records (``METRICS``: one record per metric, ``catalog`` declares the study's).

The names below load on first use (PEP 562), the catalog first, so that importing the registry alone
(``ad_core.metrics.registry``, as the results reader does) loads no scikit-learn or scikit-image:
``ad-repro --help`` stays light (tests/test_startup.py).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "catalog": "", "bootstrap": "",
    "ImageMetrics": "image", "image_metrics": "image",
    "pixel_metrics": "pixel", "pixel_scores": "pixel", "pro_curve": "pixel", "pro_score": "pixel",
    "METRICS": "registry", "EvaluationSet": "registry", "Metric": "registry", "evaluate_metrics": "registry",
    "evaluated": "registry", "metric": "registry", "metric_names": "registry", "of_levels": "registry",
    "recorded_names": "registry", "register": "registry", "unregister": "registry",
    "macro_mean": "summary",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'ad_core.metrics' has no attribute {name!r}")
    importlib.import_module("ad_core.metrics.catalog")  # the study's records registered before any is read
    module = _HOME[name]
    if not module:
        return importlib.import_module(f"ad_core.metrics.{name}")
    return getattr(importlib.import_module(f"ad_core.metrics.{module}"), name)
