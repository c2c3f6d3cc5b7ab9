"""Data: MVTec-layout discovery, image/mask reading, preprocessing, splits, embedded dataset."""

from ad_core.data.layouts.mvtec import discover_category, list_categories
from ad_core.data.samples import CategoryFiles, Sample
from ad_core.data.splits import Splits, make_splits, save_splits

__all__ = [
    "CategoryFiles",
    "Sample",
    "Splits",
    "discover_category",
    "list_categories",
    "make_splits",
    "save_splits",
]
