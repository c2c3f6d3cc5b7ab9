"""MVTec-Shift: the study's synthetic domain shift (docs/protocol.md §3)."""

from ad_core.shift.generate import write_shifted_category
from ad_core.shift.transform import ShiftParams, apply_shift, sample_shift_params

__all__ = ["ShiftParams", "apply_shift", "sample_shift_params", "write_shifted_category"]
