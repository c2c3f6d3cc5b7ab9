"""Errors with messages that say which file is wrong, what is wrong and what to do."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data folder or file does not follow the MVTec AD layout or cannot be read."""


class UndefinedMetricError(ValueError):
    """A metric has no defined value for these inputs (e.g. PRO with no anomalous pixel)."""


class ThresholdError(ValueError):
    """No threshold can be calibrated from these validation scores and labels."""


class SettingError(ValueError):
    """A setting read from the environment is invalid; the message names the variable, its value and the fix."""


class WeightsError(RuntimeError):
    """Backbone weights could not be loaded."""


class FileFormatError(ValueError):
    """A file from outside (handed over, or damaged on disk) cannot be used: the message names the file,
    the field and the fix (ad_core.data.records, experiments.readers)."""


class LinkError(FileFormatError):
    """A symbolic link stands below a folder the suite writes in (``--out``, a feature cache, a golden folder):
    nothing is written through it (ad_core.data.io.atomic_open, docs/security.md)."""
