"""``ad-repro compare A B``: hold a run folder against another run or a golden folder.

The comparison is the one the pytest gates use (``experiments.goldens``): the same numbers
(every number the report states) and the same tolerances — a golden side's own, else
those derived from run A's set sizes (granularity rule, no drift), or one ``--tolerance``
for every number.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.artifacts import load_results
from experiments.goldens import allowed_difference, compare_numbers, derive_tolerances, entries, tolerance_name


class CompareError(ValueError):
    """The two folders cannot be compared (missing, or different scenarios / methods / classes)."""


def load_side(path: Path) -> tuple[str, dict[str, dict], dict[str, dict]]:
    """(kind, {scenario: entries}, {scenario: tolerances}) of a run folder or a golden folder."""
    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"{path} is not a folder: pass a run's --out folder or a golden/<dataset>-<backbone> folder")
    if (path / "results").is_dir():
        results = load_results(path)
        if not results:
            raise CompareError(f"{path}/results holds no scenario results: did the run finish?")
        return "run", {r["scenario"]: entries(r) for r in results}, {
            r["scenario"]: derive_tolerances(r, {"max_abs": {}, "max_rel": {}, "how": "none (run vs run)"})
            for r in results}
    goldens = [json.loads(p.read_text()) for p in sorted(path.glob("*.json")) if p.name != "drift.json"]
    goldens = [g for g in goldens if "tolerances" in g and "methods" in g]
    if not goldens:
        raise CompareError(f"{path} is neither a run folder (no results/) nor a golden folder (no golden *.json)")
    return "golden", {g["scenario"]: g["methods"] for g in goldens}, {g["scenario"]: g["tolerances"] for g in goldens}


def _same_keys(what: str, a: dict, b: dict, where: str) -> None:
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise CompareError(f"different {what}{where}: only in A {only_a}, only in B {only_b}")


def compare_folders(a: Path, b: Path, tolerance: float | None = None) -> list[dict]:
    """Every number that differs: scenario, method, entry, number, a, b, diff, allowed, holds."""
    kind_a, ea, ta = load_side(a)
    kind_b, eb, tb = load_side(b)
    _same_keys("scenarios", ea, eb, "")
    rows = []
    for sc in sorted(ea):
        _same_keys("methods", ea[sc], eb[sc], f" in {sc}")
        tolerances = tb[sc] if kind_b == "golden" else ta[sc]
        if tolerance is not None:
            tolerances = {}
        for method in ea[sc]:
            _same_keys("classes / entries", ea[sc][method], eb[sc][method], f" in {sc}/{method}")
            for entry, numbers_a in ea[sc][method].items():
                numbers_b = eb[sc][method][entry]
                flat_tol = tolerances if tolerance is None else {
                    tolerance_name(n): {"abs": tolerance} for n in set(numbers_a) | set(numbers_b)}
                beyond = {m[0] for m in compare_numbers(numbers_a, numbers_b, flat_tol)}
                for name in sorted(set(numbers_a) | set(numbers_b)):
                    va, vb = numbers_a.get(name), numbers_b.get(name)
                    if va == vb:
                        continue
                    numeric = isinstance(va, (int, float))
                    allowed = allowed_difference(flat_tol, name, va) if numeric else 0.0
                    diff = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
                    rows.append({"scenario": sc, "method": method, "entry": entry, "number": name, "a": va, "b": vb,
                                 "diff": diff, "allowed": allowed, "holds": name not in beyond})
    return rows


def format_rows(rows: list[dict]) -> list[str]:
    def cell(v: object) -> str:
        return "null" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

    lines = ["| scenario | method | entry | number | A | B | B - A | allowed | holds |", "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['method']} | {r['entry']} | {r['number']} | {cell(r['a'])} | "
                     f"{cell(r['b'])} | {cell(r['diff'])} | {cell(r['allowed'])} | {'yes' if r['holds'] else 'NO'} |")
    return lines
