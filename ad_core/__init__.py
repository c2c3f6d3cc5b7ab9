"""ad_core: the importable core of ad-repro.

Stages (data flows one way): ``data`` (MVTec layout, splits, embedded dataset) ->
``shift`` (MVTec-Shift) -> features -> models -> ``thresholds`` / ``metrics``.
"""

__version__ = "0.1.0"

SEED = 42  # the study's seed (docs/protocol.md §2)
