"""Per-phase wall time (ad_core/timing.py): exclusive accounting, so phases add up to the time inside them."""

from __future__ import annotations

import time

import pytest

from ad_core import timing

pytestmark = pytest.mark.fast


def test_nested_phases_are_exclusive_and_add_up():
    timing.reset()
    t0 = time.perf_counter()
    with timing.phase("outer"):
        time.sleep(0.05)
        with timing.phase("inner"):
            time.sleep(0.1)
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    got = timing.snapshot()
    # sleeps only overshoot (a loaded machine): lower bounds, and the exact split of the elapsed time
    assert got["inner"] >= 0.1 and got["outer"] >= 0.1
    assert got["outer"] == pytest.approx(elapsed - got["inner"], abs=1e-3)


def test_phase_works_as_a_decorator_and_survives_exceptions():
    timing.reset()

    @timing.phase("work")
    def work(fail: bool) -> None:
        time.sleep(0.02)
        if fail:
            raise RuntimeError("boom")

    work(False)
    with pytest.raises(RuntimeError), timing.phase("caller"):
        work(True)
    got = timing.snapshot()
    assert got["work"] >= 0.04 and got["caller"] < got["work"]  # the caller is paused while work runs
    timing.reset()
    assert timing.snapshot() == {}


def test_current_names_the_innermost_running_phase():
    assert timing.current() is None
    with timing.phase("outer"):
        assert timing.current() == "outer"
        with timing.phase("inner"):
            assert timing.current() == "inner"
        assert timing.current() == "outer"
    assert timing.current() is None
