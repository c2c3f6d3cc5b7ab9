"""Start-up stays light: ``ad-repro --help`` and ``import ad_core`` load no heavy library.

Checked by the modules a fresh interpreter imports (``python -X importtime``), not by a
timed assertion: torch alone costs ~2 s on the build machine.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.fast

HEAVY = ("torch", "torchvision", "faiss", "numba", "matplotlib", "skimage", "sklearn", "scipy", "timm")


def imported_modules(code: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          check=True)
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("code", [
    "import experiments.cli as c; c.build_parser().format_help()",
    "import ad_core, ad_core.features, ad_core.errors",
])
def test_no_heavy_library_at_start_up(code):
    loaded = imported_modules(code)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"{code!r} imports {heavy[:5]}"


def test_lazy_features_still_resolve():
    from ad_core.features import BACKBONE_NAMES, BACKBONES, FeatureExtractor, WeightsError

    assert tuple(BACKBONES) == BACKBONE_NAMES and callable(FeatureExtractor) and issubclass(WeightsError, Exception)
