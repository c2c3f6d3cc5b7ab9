"""The ``golden_regression`` pytest fixture: golden files checked through pytest-regressions.

Installed as a pytest plugin (entry point ``ad_repro``), so any pytest suite in an environment
with ad-repro and pytest-regressions can gate its own numbers with the golden files of
``ad-repro golden record`` / ``ad-repro compare``.  The workflow is pytest-regressions' own
(``perform_regression_check``): a missing golden is written and the test fails; a differing one
leaves ``<scenario>.obtained.json`` beside it and fails with every moved number in one message;
``--force-regen`` rewrites a differing golden and fails; ``--regen-all`` rewrites every golden and
passes.  What it adds is the golden format (``experiments.goldens``): the tolerance of every
kind of number, with its rule and why, lives in the file; ``null`` must stay ``null``; one file
holds a scenario's every method and entry.  Expected files are read by the strict reader
(``experiments.readers.read_golden``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ad_core.data.io import write_json

Entries = dict[str, dict[str, dict[str, Any]]]  # {method key: {entry: {number: value}}}


def moved_numbers(expected: Entries, obtained: Entries, tolerances: dict) -> list[str]:
    """One line per number beyond its tolerance, or present on one side only ('method/entry/number: ...')."""
    from experiments.goldens import compare_numbers, describe

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


class GoldenRegression:
    """Check one golden file (``path``) against a record of the same format; see the module docstring."""

    def __init__(self, request: pytest.FixtureRequest, datadir: Any, original_datadir: Path) -> None:
        self.request, self.datadir, self.original_datadir = request, datadir, original_datadir

    def check(self, record: dict, path: str | Path) -> None:
        """Hold ``record`` (a golden file's content: ``tolerances``, ``methods``, ...) against ``path``.

        Every number of ``record['methods']`` is compared with the golden's with the **golden's**
        tolerances (the file says how it is read); the obtained record is what a regeneration writes."""
        from pytest_regressions.common import perform_regression_check

        from experiments.readers import read_golden

        path = Path(path)
        obtained = path.with_name(f"{path.stem}.obtained{path.suffix}")

        def dump(target: Path) -> None:
            write_json(target, record)

        def check_fn(obtained_path: Path, expected_path: Path) -> None:
            golden = read_golden(expected_path)
            tolerances = {k: {u: v for u, v in (("abs", t.abs), ("rel", t.rel)) if v is not None}
                          for k, t in golden.tolerances.items()}
            lines = moved_numbers(golden.methods, record["methods"], tolerances)
            if lines:
                raise AssertionError(
                    f"{len(lines)} number(s) of {record.get('scenario', path.stem)} beyond the tolerances of "
                    f"{expected_path} (obtained: {obtained_path}):\n  " + "\n  ".join(lines))

        __tracebackhide__ = True
        perform_regression_check(
            datadir=self.datadir, original_datadir=self.original_datadir, request=self.request,
            check_fn=check_fn, dump_fn=dump, extension=path.suffix, fullpath=path, obtained_filename=obtained)
        obtained.unlink(missing_ok=True)  # it held: nothing to look at

    def check_result(self, result: Any, folder: str | Path, *, dataset: str | None = None,
                     backbone: str | None = None, verdict: dict | None = None) -> None:
        """Hold a ``ScenarioResult`` against ``folder/<scenario>.json``; a regenerated golden gets
        tolerances derived from the result's set sizes and ``folder``'s ``drift.json``
        (``experiments.goldens.derive_tolerances``), and ``verdict``'s status and summary."""
        from experiments.goldens import derive_tolerances, load_drift, payload

        folder = Path(folder)
        cfg = result.config
        record = payload(result, dataset or str(cfg.get("dataset")), backbone or str(cfg.get("backbone")),
                         derive_tolerances(result, load_drift(folder)))
        if verdict is not None:
            record["recorded_with_verdict"] = {k: verdict[k] for k in ("preset", "status", "summary")}
        self.check(record, folder / f"{result.scenario}.json")

    def check_numbers(self, numbers: Entries, path: str | Path, tolerances: dict[str, dict]) -> None:
        """Hold your own numbers, ``{method: {entry: {number: value}}}``, against the golden ``path``.

        ``tolerances``: ``{number: {"abs": a, "rel": r, "why": "..."}}`` (``abs`` and/or ``rel``; a
        ``why`` is required, since the file must say how it is to be read); an unlisted number must
        match exactly."""
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
