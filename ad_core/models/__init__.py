"""PatchCore (docs/protocol.md §5) and PaDiM (§6): fit on training feature maps, score feature maps."""

from ad_core.models.padim import PaDiM
from ad_core.models.patchcore import PatchCore

__all__ = ["PaDiM", "PatchCore"]
