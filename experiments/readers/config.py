"""Run configurations (``<out>/config.json``, a golden folder's ``config.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.readers.core import (
    Strict,
    check_format,
    convert,
    open_regular,
    parse_json,
    plain_name,
)

# -- run configurations: <out>/config.json, a golden folder's config.json (run --config) -------
CONFIG_FORMAT = 1
CONFIG_FIX = "record it again (ad-repro golden record RUN DEST) or fix that field"
Unset = None  # a field absent from the file: RunConfig's default (pydantic does not validate defaults)


class ConfigFile(Strict):
    """Every RunConfig field, each optional; types exact (``null`` only where the setting allows it)."""

    format: int = CONFIG_FORMAT
    # the study's settings: a recorded configuration sets these
    dataset: str = Unset
    layout: str = Unset
    categories: list[str] | None = Unset
    scenarios: list[str] | None = Unset
    methods: list[str] = Unset
    preset: str = Unset
    backbone: str | None = Unset
    weights: str | None = Unset  # a name (torchvision, package, random) is a setting; a file path is not
    knn_backend: str = Unset
    seed: int = Unset
    batch_size: int = Unset
    coreset_ratio: float = Unset
    k: int = Unset
    projection_dim: int = Unset
    padim_features: int | None = Unset
    patchcore_reweighting: str = Unset
    patchcore_blur: float | None = Unset
    patchcore_embedding: str = Unset
    image_size: int = Unset
    resize: int | None = Unset
    split: str = Unset
    threshold: str = Unset
    threshold_fpr: float = Unset
    bootstrap: bool = Unset
    # where and how the run executes, and what it reads and writes: never taken from a file
    out: str = Unset
    data: str | None = Unset
    device: str = Unset
    executor: str = Unset
    scheduler: str | None = Unset
    workers: int = Unset
    threads: int | None = Unset
    feature_cache: str | None = Unset
    feature_memory_gb: float = Unset
    progress: bool = Unset


def read_config(path: str | Path) -> dict[str, Any]:
    """The fields a configuration file sets (as written), strictly typed; ``format`` checked and dropped."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    parsed = convert(path, value, ConfigFile, CONFIG_FIX)
    check_format(path, parsed.format, CONFIG_FORMAT, "run configuration")
    for name in parsed.categories or []:
        plain_name(name, "field categories: the category", str(path))
    fields = parsed.model_dump(exclude_unset=True)
    fields.pop("format", None)
    return fields
