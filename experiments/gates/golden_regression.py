"""The ``golden_regression`` pytest fixture: golden files checked through pytest-regressions.

Installed as a pytest plugin (entry point ``ad_repro``), so any pytest suite in an environment
with ad-repro and pytest-regressions can gate its own numbers with the golden files of
``ad-repro golden record`` / ``ad-repro compare``.  The workflow is pytest-regressions' own
(``perform_regression_check``): a missing golden is written and the test fails; a differing one
leaves ``<scenario>.obtained.json`` and fails with every moved number in one message;
``--force-regen`` rewrites a differing golden and fails; ``--regen-all`` rewrites every golden and
passes.  What it adds is the golden format (``experiments.gates.goldens``): the tolerance of every
kind of number, with its rule and why, lives in the file; ``null`` must stay ``null``; one file
holds a scenario's every method and entry.  Expected files are read by the strict reader
(``experiments.readers.read_golden``).

The golden is compared before anything is written, so a golden that holds writes nothing and a
read-only golden folder (a CI checkout, a package's data) passes; the ``.obtained`` file of a
differing golden goes beside it where that folder is writable, else into the test's temporary
folder (pytest's ``tmp_path``, via the ``datadir`` fixture), and the failure names where.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import pytest

from ad_core.data.io import write_json

Entries = dict[str, dict[str, dict[str, Any]]]  # {method key: {entry: {number: value}}}


def moved_numbers(expected: Entries, obtained: Entries, tolerances: dict) -> list[str]:
    """One line per number beyond its tolerance, or present on one side only ('method/entry/number: ...')."""
    from experiments.gates.goldens import compare_numbers, describe

    lines = []
    for method in sorted(set(expected) | set(obtained)):
        if method not in obtained or method not in expected:
            lines.append(f"{method}: only in the {'golden' if method in expected else 'run'}")
            continue
        for entry in sorted(set(expected[method]) | set(obtained[method])):
            e, o = expected[method].get(entry), obtained[method].get(entry)
            if e is None or o is None:
                lines.append(f"{method}/{entry}: only in the {'golden' if e is not None else 'run'}")
                continue
            lines += [f"{method}/{entry}/{line}" for line in describe(compare_numbers(e, o, tolerances))]
    return lines


def _finite(value: Any) -> bool:
    """False for a NaN or an infinity (numpy's too); True for any other value (None: null)."""
    try:
        return math.isfinite(value)
    except TypeError:  # None, or not a number at all: the golden's strict reader names that one
        return True


class GoldenRegression:
    """Check one golden file (``path``) against a record of the same format; see the module docstring."""

    def __init__(self, request: pytest.FixtureRequest, datadir: Any, original_datadir: Path) -> None:
        self.request, self.datadir, self.original_datadir = request, datadir, original_datadir

    def check(self, record: dict, path: str | Path) -> None:
        """Hold ``record`` (a golden file's content: ``tolerances``, ``methods``, ...) against ``path``.

        Every number of ``record['methods']`` is compared with the golden's with the **golden's**
        tolerances (the file says how it is read); the obtained record is what a regeneration writes.
        Nothing is written while every number holds (``--regen-all`` aside): an earlier run's
        ``.obtained`` file is removed where the folder allows."""
        from pytest_regressions.common import perform_regression_check

        __tracebackhide__ = True
        path = Path(path)
        regen_all = self.request.config.getoption("regen_all")
        beside = path.with_name(f"{path.stem}.obtained{path.suffix}")
        if not regen_all and path.is_file() and not self.moved(record, path):
            with contextlib.suppress(OSError):  # it holds (--force-regen rewrites a differing golden only):
                beside.unlink(missing_ok=True)  # nothing written; an earlier run's obtained file is stale
            return
        written = [beside]

        def dump(target: Path) -> None:
            if target == beside:  # the obtained file: beside the golden where its folder takes it
                try:
                    write_json(target, record)
                    return
                except OSError:
                    target = self.scratch(path) / beside.name
                    written[0] = target
            write_json(target, record)

        def check_fn(obtained_path: Path, expected_path: Path) -> None:
            lines = self.moved(record, expected_path)
            if lines:
                where = written[0]
                note = "" if where == beside else f", in pytest's temporary folder: {path.parent} is not writable"
                raise AssertionError(
                    f"{len(lines)} number(s) of {record.get('scenario', path.stem)} beyond the tolerances of "
                    f"{expected_path} (obtained: {where}{note}):\n  " + "\n  ".join(lines))

        perform_regression_check(
            datadir=self.datadir, original_datadir=self.original_datadir, request=self.request,
            check_fn=check_fn, dump_fn=dump, extension=path.suffix, fullpath=path, obtained_filename=beside)
        with contextlib.suppress(OSError):  # --regen-all: an earlier run's obtained file is stale
            beside.unlink(missing_ok=True)

    def moved(self, record: dict, golden_path: Path) -> list[str]:
        """The moved numbers of ``record`` against the golden ``golden_path``, read strictly."""
        from experiments.readers import read_golden

        golden = read_golden(golden_path)
        tolerances = {k: {u: v for u, v in (("abs", t.abs), ("rel", t.rel)) if v is not None}
                      for k, t in golden.tolerances.items()}
        return moved_numbers(golden.methods, record["methods"], tolerances)

    def scratch(self, path: Path) -> Path:
        """A writable folder of this test's temporary tree for ``path``'s obtained file."""
        folder = Path(getattr(self.datadir, "tmp_path", self.datadir)) / "obtained" / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def check_result(self, result: Any, folder: str | Path, *, dataset: str | None = None,
                     backbone: str | None = None, verdict: dict | None = None) -> None:
        """Hold a ``ScenarioResult`` against ``folder/<scenario>.json``; a regenerated golden gets
        tolerances derived from the result's set sizes and ``folder``'s ``drift.json``
        (``experiments.gates.goldens.derive_tolerances``), and ``verdict``'s status and summary."""
        from experiments.gates.goldens import derive_tolerances, load_drift, payload

        folder = Path(folder)
        cfg = result.config
        record = payload(result, dataset or str(cfg.get("dataset")), backbone or str(cfg.get("backbone")),
                         derive_tolerances(result, load_drift(folder)), verdict)
        self.check(record, folder / f"{result.scenario}.json")

    def check_numbers(self, numbers: Entries, path: str | Path, tolerances: dict[str, dict]) -> None:
        """Hold your own numbers, ``{method: {entry: {number: value}}}``, against the golden ``path``.

        ``tolerances``: ``{number: {"abs": a, "rel": r, "why": "..."}}`` (``abs`` and/or ``rel``; a
        ``why`` is required, since the file must say how it is to be read); an unlisted number must
        match exactly.  A number is a finite float or ``None`` (recorded as ``null``, which must stay
        ``null``): a NaN or an infinity is a ``ValueError`` naming it, before anything is written,
        since a NaN recorded in a golden never holds again."""
        __tracebackhide__ = True
        for method, entries in numbers.items():
            for entry, values in entries.items():
                for name, value in values.items():
                    if not _finite(value):
                        raise ValueError(
                            f"{path}: {method}/{entry}/{name} is {value}, not a finite number: a golden holds "
                            "finite numbers or None (null); fix the number or pass None where it is undefined")
        tol = {}
        for name, t in tolerances.items():
            if not t.get("why") or ("abs" not in t and "rel" not in t):
                raise ValueError(f"tolerance of {name!r}: give 'abs' and/or 'rel' and a 'why'")
            tol[name] = {"rule": t.get("rule", "given by the test"), **t}
        names = {n for entries in numbers.values() for e in entries.values() for n in e}
        for name in sorted(names - set(tol)):
            tol[name] = {"abs": 0, "rule": "exact", "why": "no tolerance given by the test"}
        self.check({"format": 1, "scenario": Path(path).stem, "tolerances": tol, "methods": numbers}, path)


try:
    import pytest_regressions  # noqa: F401  (its plugin registers --force-regen / --regen-all and datadir)
except ImportError:  # ad-repro without its test extra: the fixture says what to install
    @pytest.fixture
    def golden_regression(request: pytest.FixtureRequest) -> GoldenRegression:
        """Unavailable: pytest-regressions is not installed."""
        raise pytest.UsageError("golden_regression needs pytest-regressions: pip install 'ad-repro[test]' "
                                "(or pip install pytest-regressions)")
else:
    @pytest.fixture
    def golden_regression(request: pytest.FixtureRequest, datadir: Any, original_datadir: Path) -> GoldenRegression:
        """Check numbers against an ad-repro golden file with pytest-regressions' workflow and flags."""
        return GoldenRegression(request, datadir, original_datadir)
