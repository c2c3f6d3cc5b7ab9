"""``ad-repro compare A B``: hold a run folder against another run or a golden folder.

The comparison is the one the pytest gates use (``experiments.gates.goldens``): the same numbers
(every number the report states) and the same tolerances — a golden side's own, else
those derived from run A's set sizes (granularity rule, no drift), or one ``--tolerance``
for every number.  A NaN never holds, an infinity holds only against the same infinity
(``goldens.within``).  Both sides are read by the strict readers (``experiments.readers``): a run's
results only where they match the checksums their run wrote, a golden file by its schema; a folder
or file that cannot be read as what it should be raises ``CompareError`` naming the file and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from experiments.evaluation.results import ScenarioResult
from experiments.gates.goldens import allowed_difference, compare_numbers, derive_tolerances, entries, tolerance_name
from experiments.readers import FileFormatError, read_golden
from experiments.records.artifacts import verified_results

NOT_GOLDEN = ("drift.json", "config.json")  # the other files of a golden folder (measured drift, the run's settings)


class CompareError(ValueError):
    """The two folders cannot be compared (missing, unreadable, malformed, or different scenarios /
    methods / classes), or the tolerance is not a finite number >= 0."""


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _scenario_name(path: Path, d: dict, seen: dict[str, Path]) -> str:
    name = d.get("scenario")
    if not isinstance(name, str):
        raise CompareError(f"{path}: 'scenario' must be a string, got {json.dumps(name)[:60]}")
    if name in seen:
        raise CompareError(f"{path}: scenario {name!r} is also in {seen[name]}")
    seen[name] = path
    return name


def _load_run_file(path: Path, r: dict, seen: dict[str, Path]) -> tuple[str, dict, dict]:
    """(scenario, entries, derived tolerances) of one verified results/<scenario>.json (``r``: its JSON)."""
    scenario = _scenario_name(path, r, seen)
    result = ScenarioResult.from_json(r)  # checked by the strict reader (experiments.readers.read_results)
    e = entries(result)
    try:
        tol = derive_tolerances(result, {"max_abs": {}, "max_rel": {}, "how": "none (run vs run)"})
    except ZeroDivisionError:
        raise CompareError(f"{path}: a class has no normal or no anomalous test images: "
                           "its tolerances cannot be derived (pass --tolerance)") from None
    return scenario, e, tol


def load_side(path: Path) -> tuple[str, dict[str, dict], dict[str, dict]]:
    """(kind, {scenario: entries}, {scenario: tolerances}) of a run folder or a golden folder."""
    path = Path(path)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise CompareError(f"{path} {what}: pass a run's --out folder or a golden/<dataset>-<backbone> folder")
    seen: dict[str, Path] = {}
    if (path / "results").is_dir():
        ea, ta = {}, {}
        try:
            verified = verified_results(path, strict=True)
        except FileFormatError as exc:
            raise CompareError(str(exc)) from None
        for p, r in verified:
            scenario, numbers, tolerances = _load_run_file(p, r, seen)
            ea[scenario], ta[scenario] = numbers, tolerances
        if not ea:
            raise CompareError(f"{path}/results holds no scenario results: did the run finish?")
        return "run", ea, ta
    ea, ta = {}, {}
    for p in sorted(path.glob("*.json")):
        if p.name in NOT_GOLDEN or p.name.endswith(".obtained.json"):
            continue
        try:
            g = read_golden(p, within=path)
        except FileFormatError as exc:
            raise CompareError(str(exc)) from None
        scenario = _scenario_name(p, {"scenario": g.scenario}, seen)
        ea[scenario] = g.methods
        ta[scenario] = {k: {u: v for u, v in (("abs", t.abs), ("rel", t.rel)) if v is not None}
                        for k, t in g.tolerances.items()}
    if not ea:
        raise CompareError(f"{path} is neither a run folder (no results/) nor a golden folder (no golden *.json)")
    return "golden", ea, ta


def _same_keys(what: str, a: dict, b: dict, where: str, sides: tuple[Path, Path]) -> None:
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise CompareError(f"{sides[0]} (A) and {sides[1]} (B) hold different {what}{where}: only in A {only_a}, "
                           f"only in B {only_b}")


def check_tolerance(tolerance: object) -> None:
    """CompareError unless ``tolerance`` is None (the golden / derived ones) or a finite number >= 0."""
    if tolerance is not None and not (_is_number(tolerance) and math.isfinite(tolerance) and tolerance >= 0):
        raise CompareError(f"--tolerance must be a finite number >= 0, got {tolerance}")


def compare_folders(a: Path, b: Path, tolerance: float | None = None, *, every: bool = False,
                    shared: bool = False) -> list[dict]:
    """The compared numbers: scenario, method, entry, number, a, b, diff, allowed, differs, holds.

    Default: the numbers that differ (``a != b``; a NaN always differs).  ``every=True``: every
    number compared, equal ones included (``differs`` False, ``holds`` True), so that
    ``len(rows)`` is the count of numbers compared (``summarise``).  ``shared``: compare the
    scenarios both folders hold (else a scenario on one side only is an error).
    """
    check_tolerance(tolerance)
    kind_a, ea, ta = load_side(a)
    kind_b, eb, tb = load_side(b)
    if shared:  # only the scenarios both sides ran
        common = set(ea) & set(eb)
        if not common:
            raise CompareError(f"{a} and {b} share no scenario: A has {sorted(ea)}, B has {sorted(eb)}")
        ea, eb = {k: v for k, v in ea.items() if k in common}, {k: v for k, v in eb.items() if k in common}
    _same_keys("scenarios", ea, eb, "", (a, b))
    rows = []
    for sc in sorted(ea):
        _same_keys("methods", ea[sc], eb[sc], f" in {sc}", (a, b))
        tolerances = tb[sc] if kind_b == "golden" else ta[sc]
        for method in ea[sc]:
            _same_keys("classes / entries", ea[sc][method], eb[sc][method], f" in {sc}/{method}", (a, b))
            for entry, numbers_a in ea[sc][method].items():
                numbers_b = eb[sc][method][entry]
                flat_tol = tolerances if tolerance is None else {
                    tolerance_name(n): {"abs": tolerance} for n in set(numbers_a) | set(numbers_b)}
                beyond = {m[0] for m in compare_numbers(numbers_a, numbers_b, flat_tol)}
                for name in sorted(set(numbers_a) | set(numbers_b)):
                    va, vb = numbers_a.get(name), numbers_b.get(name)
                    differs = va != vb  # NaN != NaN: a NaN always differs
                    if not differs and not every:
                        continue
                    finite_a = _is_number(va) and math.isfinite(va)
                    allowed = allowed_difference(flat_tol, name, va) if finite_a else 0.0
                    diff = vb - va if _is_number(va) and _is_number(vb) else None
                    rows.append({"scenario": sc, "method": method, "entry": entry, "number": name, "a": va, "b": vb,
                                 "diff": diff, "allowed": allowed, "differs": differs,
                                 "holds": name not in beyond})
    return rows


def summarise(rows: list[dict]) -> str:
    """One line: numbers compared (every row: pass ``compare_folders(..., every=True)``'s), how many
    differ, how many are beyond tolerance, and the verdict."""
    differ = sum(1 for r in rows if r.get("differs", True))
    failing = sum(1 for r in rows if not r["holds"])
    return (f"{len(rows)} number(s) compared, {differ} number(s) differ, {failing} beyond tolerance: "
            + ("every number holds" if not failing else "NOT the same within tolerance"))


def format_rows(rows: list[dict], only_failing: bool = False) -> list[str]:
    """A markdown table of the rows that differ (rows of equal numbers are left out); ``only_failing``:
    of the rows beyond tolerance only."""
    def cell(v: object) -> str:
        return "null" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

    lines = ["| scenario | method | entry | number | A | B | B - A | allowed | holds |", "|" + "---|" * 9]
    for r in rows:
        if not r.get("differs", True) or (only_failing and r["holds"]):
            continue
        lines.append(f"| {r['scenario']} | {r['method']} | {r['entry']} | {r['number']} | {cell(r['a'])} | "
                     f"{cell(r['b'])} | {cell(r['diff'])} | {cell(r['allowed'])} | {'yes' if r['holds'] else 'NO'} |")
    return lines
