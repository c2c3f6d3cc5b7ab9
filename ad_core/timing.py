"""Wall time per named phase (backbone, coreset, kNN scoring, ...), summed over a run.

``with phase("coreset"): ...`` charges the block's wall time to "coreset".  Phases nest and the
time is **exclusive**: while an inner phase runs, the outer one is paused, so the phases of a
run add up to the time spent inside them (``experiments`` reports the remainder as "other").
The recorder is process-wide and single-threaded by design (the runner drives one study at a
time); ``reset`` starts a new count, ``snapshot`` reads it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

_totals: dict[str, float] = {}
_stack: list[list] = []  # [name, start of its current running stretch]


@contextmanager
def phase(name: str) -> Iterator[None]:
    now = time.perf_counter()
    if _stack:  # pause the enclosing phase
        outer = _stack[-1]
        _totals[outer[0]] = _totals.get(outer[0], 0.0) + now - outer[1]
    _stack.append([name, now])
    try:
        yield
    finally:
        end = time.perf_counter()
        _, start = _stack.pop()
        _totals[name] = _totals.get(name, 0.0) + end - start
        if _stack:
            _stack[-1][1] = end  # resume the enclosing phase


def current() -> str | None:
    """The innermost running phase (None outside every phase); safe to call from another thread."""
    try:
        return _stack[-1][0]
    except IndexError:
        return None


def reset() -> None:
    _totals.clear()


def snapshot() -> dict[str, float]:
    """Seconds per phase so far (exclusive), largest first."""
    return dict(sorted(_totals.items(), key=lambda kv: -kv[1]))
