"""Strict readers of every structured file a person can hand over (docs/security.md).

Golden folders, run folders (``results/*.json``, ``checksums.json``, ``provenance.json``,
``config.json`` / ``run_config.json``, ``splits/*.json``) and configurations come from
colleagues, other teams, other versions of this suite or a damaged disk.  Each is read here,
once, through one path:

1. ``open_regular``: only a regular file is opened (a FIFO, a device or a folder is refused
   before it can block or flood the reader; a symbolic link only where it stays inside the
   folder it was handed over in), and at most ``MAX_BYTES`` are read;
2. JSON is parsed with integers bounded to ``MAX_INT_DIGITS`` digits and nesting bounded;
3. the value is validated against its schema with pydantic in strict mode: a string is never
   a boolean, ``null`` is never a device, an unknown key is named, a missing one is named, an
   unknown ``format`` version is named.

Why pydantic (strict models with ``extra="forbid"``) and not msgspec or hand-written checks:
it names the failing field by its whole path through nested mappings
(``methods.padim.coffee.pro``; msgspec says ``methods[...]`` for mapping keys), strict mode
refuses every coercion (``"false"``, ``1.0`` for an integer, ``true`` for a number), and it is
well kept.  Any failure is a ``FileFormatError``: one line naming the file, the field and what
to do; the CLI prints it and exits 2.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, ValidationError

MAX_BYTES = 32 * 1024 * 1024  # the largest handed-over JSON file read (a golden is ~10 kB, a run's splits ~1 MB)
MAX_INT_DIGITS = 19  # every integer the suite writes fits in 64 bits
MAX_DEPTH = 64  # nesting of the suite's own files is below 10

T = TypeVar("T")


class FileFormatError(ValueError):
    """A handed-over file cannot be used: the message names the file, the field and the fix."""


def _refuse(path: Path, what: str, fix: str) -> FileFormatError:
    return FileFormatError(one_line(f"{path}: {what}; {fix}"))


def one_line(message: str) -> str:
    """``message`` with its control characters escaped: a message naming a file's content stays one line."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in message)


def open_regular(path: str | Path, within: str | Path | None = None, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``max_bytes``.

    ``within``: the folder the file was handed over in; a symbolic link that leads outside it is
    refused (a golden folder's ``clean.json -> /etc/passwd``).  FIFOs, devices, sockets and folders
    are refused without blocking (opened non-blocking, checked with ``fstat`` before any read).
    ``FileNotFoundError`` passes through for the caller to say what was expected.
    """
    path = Path(path)
    if within is not None and path.is_symlink():
        target, root = path.resolve(), Path(within).resolve()
        if not target.is_relative_to(root):
            raise _refuse(path, f"is a symbolic link to {target}, outside {root}",
                          "replace the link by the file itself")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise _refuse(path, "is a folder, not a file", "point at the file (or remove the folder)") from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise _refuse(path, f"cannot be opened ({exc.strerror})", "fix its permissions or replace it") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket")
            raise _refuse(path, f"is {kind}, not a regular file", "replace it by the file itself")
        if st.st_size > max_bytes:
            raise _refuse(path, f"is {st.st_size:,} bytes, over the {max_bytes:,}-byte limit of such files",
                          "it is not a file this suite wrote; replace it")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.strerror or exc})", "replace it") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise _refuse(path, f"holds over {max_bytes:,} bytes", "it is not a file this suite wrote; replace it")
    return data


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _depth(value: object, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed JSON value, stopping at ``limit`` + 1."""
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(v, dict):
            stack += [(x, d + 1) for x in v.values()]
        elif isinstance(v, list):
            stack += [(x, d + 1) for x in v]
    return deepest


def parse_json(path: str | Path, data: bytes, fix: str | None = None) -> Any:
    """JSON from ``data`` (UTF-8), integers bounded; FileFormatError naming ``path`` (and ``fix``) otherwise."""
    path = Path(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})",
                      "it is damaged or not a file this suite wrote; replace it") from None
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        what = "is empty" if not text.strip() else \
            f"is not complete JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise _refuse(path, what, fix or "it was truncated or edited; restore it or write it again") from None
    except ValueError as exc:
        raise _refuse(path, f"holds {exc}", "it is not a file this suite wrote; replace it") from None
    except RecursionError:
        raise _refuse(path, "is nested too deeply", "it is not a file this suite wrote; replace it") from None
    if _depth(value) > MAX_DEPTH:
        raise _refuse(path, f"is nested over {MAX_DEPTH} levels", "it is not a file this suite wrote; replace it")
    return value


def _shown(part: object) -> str:
    """A field name or key as a message shows it: as it is when printable, else JSON-quoted (one line)."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else json.dumps(text)


def _union_tag(part: object) -> bool:
    """Whether a pydantic error location part names a member of a union (``UncertainGroupFile``,
    ``int``, ``function-before[...]``) rather than a field or a key."""
    return isinstance(part, str) and (part in _SCHEMAS or "[" in part or part in ("int", "float", "str", "bool"))


def describe_error(exc: ValidationError) -> str:
    """The first problem of a pydantic error as 'field a.b.c: what (got ...)', and how many more."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [_shown(p) for p in first["loc"] if not _union_tag(p)]
    where = f"field {'.'.join(loc)}" if loc else "the top level"
    what = {"extra_forbidden": "is not a known field", "missing": "is missing"}.get(first["type"])
    if what is None:
        msg = first["msg"].removeprefix("Value error, ")
        got = json.dumps(first.get("input"), default=str)
        what = f"{msg[0].lower()}{msg[1:]} (got {got[:60]}{'...' if len(got) > 60 else ''})"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where} {what}{more}"


def convert(path: str | Path, value: object, schema: type[T], fix: str) -> T:
    """``value`` as ``schema`` (a strict pydantic model); FileFormatError naming the file and the field."""
    try:
        return schema.model_validate(value, strict=True)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise _refuse(Path(path), describe_error(exc), fix) from None


def read(path: str | Path, schema: type[T], fix: str, within: str | Path | None = None,
         max_bytes: int = MAX_BYTES) -> T:
    """Open, parse and convert one handed-over file (the three steps of this module's docstring)."""
    return convert(path, parse_json(path, open_regular(path, within, max_bytes)), schema, fix)


def check_format(path: str | Path, found: int, known: int, what: str) -> None:
    """An unknown ``format`` version is named: ``found`` newer (or older) than the ``known`` one."""
    if found != known:
        raise _refuse(Path(path), f"is a {what} of format {found}; this version of ad-repro reads format {known}",
                      "record it again with this version (or use the version that wrote it)")


class Strict(BaseModel):
    """A schema: exact types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _SCHEMAS.add(cls.__name__)


_SCHEMAS: set[str] = set()  # the schemas' names, which pydantic puts in a union member's error location


def _number(v: object) -> object:
    """A JSON number (NaN / infinities included) or null; never a boolean or a string."""
    if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v
    raise ValueError(f"must be a number or null, got {type(v).__name__}")


Number = Annotated[object, BeforeValidator(_number)]  # one message, not one per member of int | float


# -- golden files ---------------------------------------------------------------------------
GOLDEN_FORMAT = 1  # golden files written before the field existed are format 1


class Tolerance(Strict):
    """One kind of number's allowance: ``abs`` + ``rel`` x |expected|, its rule and why."""

    rule: str
    why: str
    abs: float | None = None
    rel: float | None = None


class RecordedVerdict(Strict):
    preset: str
    status: str
    summary: str


class GoldenFile(Strict):
    """``golden/<dataset>-<backbone>/<scenario>.json`` (experiments.goldens.payload)."""

    scenario: str
    tolerances: dict[str, Tolerance]
    methods: dict[str, dict[str, dict[str, Number]]]
    format: int = GOLDEN_FORMAT
    dataset: str | None = None
    backbone: str | None = None
    weights_source: str | None = None
    seed: int | None = None
    recorded_with_verdict: RecordedVerdict | None = None


GOLDEN_FIX = "record the golden again (ad-repro golden record RUN DEST, or pytest --force-regen)"


def _finite_nonnegative(path: Path, where: str, v: float | None) -> None:
    import math

    if v is not None and not (math.isfinite(v) and v >= 0):
        raise _refuse(path, f"{where} must be a finite number >= 0, got {v}", GOLDEN_FIX)


def read_golden(path: str | Path, within: str | Path | None = None) -> GoldenFile:
    """One golden file, strictly: its schema, its format version, tolerances finite and >= 0."""
    path = Path(path)
    golden = read(path, GoldenFile, GOLDEN_FIX, within)
    check_format(path, golden.format, GOLDEN_FORMAT, "golden file")
    if not any(golden.methods.values()):
        raise _refuse(path, "field methods holds no numbers", GOLDEN_FIX)
    plain_name(golden.scenario, "field scenario", str(path))
    for name, tol in golden.tolerances.items():
        if tol.abs is None and tol.rel is None:
            raise _refuse(path, f"field tolerances.{name} has neither 'abs' nor 'rel'", GOLDEN_FIX)
        _finite_nonnegative(path, f"field tolerances.{name}.abs", tol.abs)
        _finite_nonnegative(path, f"field tolerances.{name}.rel", tol.rel)
    return golden


class DriftPart(Strict):
    max_abs: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}
    max_rel: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}


class DriftFile(DriftPart):
    """A golden folder's ``drift.json`` (benchmarks/measure_drift.py): the largest drift between faithful runs."""

    how: str = "not measured"
    by_scenario: dict[str, DriftPart] = {}


def read_drift(path: str | Path) -> dict[str, Any]:
    """``drift.json``, strictly: every drift a finite number >= 0."""
    path = Path(path)
    return convert(path, parse_json(path, open_regular(path, path.parent)), DriftFile, GOLDEN_FIX).model_dump()


# -- run folders: results/<scenario>.json, checksums.json, provenance.json, run_config.json ---
RESULTS_FORMAT = 1
PROVENANCE_FORMAT = 1
RUN_FIX = "it was edited, damaged or written by another version: rerun the run (or ask for its folder again)"
HEX64 = re.compile(r"[0-9a-f]{64}")


def _confusion(v: object) -> object:
    ok = (isinstance(v, list) and len(v) == 2 and all(isinstance(r, list) and len(r) == 2 for r in v)
          and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for r in v for n in r))
    if not ok:
        raise ValueError("must be [[TN, FP], [FN, TP]] of integers >= 0")
    return v


Confusion = Annotated[object, BeforeValidator(_confusion)]
Count = Annotated[int, Field(ge=0)]


class UncertainGroupFile(Strict):
    """One group of images of unsure label (experiments.evaluate.evaluate_uncertain)."""

    n: Count
    auroc_vs_test_normals: Number
    median_score: Number = None
    flagged_fraction: Number = None


class ClassResultFile(Strict):
    image_auroc: Number
    image_auprc: Number
    image_f1: Number
    image_accuracy: Number
    threshold: Number
    pixel_auroc: Number
    pro: Number
    confusion: Confusion
    image_f1_max: Number = None
    pixel_ap: Number = None
    pixel_f1_max: Number = None
    pixel_metrics_absent: str | None = None
    image_metrics_absent: str | None = None
    threshold_rule: str | None = None
    by_defect: dict[str, dict[str, Number]] | None = None
    uncertain: dict[str, UncertainGroupFile | Number] | None = None
    memory_bank_size: Count | None = None
    fit_seconds: Number = None
    ci95: dict[str, list[Number]] | None = None


class ShortcutFile(Strict):
    cross_class_confusion: dict[str, dict[str, Number]]
    feature_separation: dict[str, Number]


class MethodResultFile(Strict):
    method: str
    coreset_ratio: Number
    per_class: dict[str, ClassResultFile]
    mean: dict[str, Number]
    pooled: ClassResultFile | None = None
    shortcut: ShortcutFile | None = None


class ResultsFile(Strict):
    """``results/<scenario>.json`` (experiments.results.ScenarioResult.to_json)."""

    scenario: str
    description: str
    config: dict[str, Any]
    methods: dict[str, MethodResultFile]
    figures: list[str] = []
    format: int = RESULTS_FORMAT


def _figure_path(path: Path, figure: str) -> None:
    """A figure is a path inside the run's ``visualizations/`` (the report links it; nothing else)."""
    parts = figure.split("/")
    if parts[0] != "visualizations" or len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or "\\" in figure:
        raise _refuse(path, f"field figures holds {figure[:60]!r}, not a path inside visualizations/", RUN_FIX)


def read_results(path: str | Path, within: str | Path | None = None) -> dict[str, Any]:
    """One results file, strictly: its schema and format, its scenario named as its file (a plain name).

    Returns the JSON (for ``ScenarioResult.from_json``), without its ``format`` field."""
    path = Path(path)
    value = parse_json(path, open_regular(path, within))
    parsed = convert(path, value, ResultsFile, RUN_FIX)
    check_format(path, parsed.format, RESULTS_FORMAT, "results file")
    if parsed.scenario != path.stem:
        raise _refuse(path, f"field scenario is {parsed.scenario[:60]!r}, not the file's name {path.stem!r}", RUN_FIX)
    plain_name(parsed.scenario, "scenario", str(path))
    for figure in parsed.figures:
        _figure_path(path, figure)
    if not any(m.per_class for m in parsed.methods.values()):
        raise _refuse(path, "no method has a class result: nothing to read", RUN_FIX)
    value.pop("format", None)
    return value


def read_checksums(path: str | Path) -> dict[str, str]:
    """``checksums.json``: {``results/<scenario>.json``: SHA-256 hex} ({} where the file is missing)."""
    path = Path(path)
    try:
        value = parse_json(path, open_regular(path, path.parent))
    except FileNotFoundError:
        return {}
    book = convert(path, value, Checksums, RUN_FIX).root
    for name, digest in book.items():
        parts = name.split("/")
        if len(parts) != 2 or parts[0] != "results" or not parts[1].endswith(".json"):
            raise _refuse(path, f"key {name[:60]!r} is not results/<scenario>.json", RUN_FIX)
        plain_name(parts[1], "results file", str(path))
        if not HEX64.fullmatch(digest):
            raise _refuse(path, f"field {name} is not a SHA-256 (64 hex digits)", RUN_FIX)
    return book


class Checksums(RootModel[dict[str, str]]):
    model_config = ConfigDict(strict=True)


class GitState(Strict):
    commit: str
    dirty: bool
    diff_sha256: str | None = None


class CpuInfo(Strict):
    model: str
    machine: str
    cores: Count
    flags: list[str]
    bfloat16_products: bool


class GpuInfo(Strict):
    name: str
    cuda: str | None = None


class ProvenanceFile(Strict):
    """``provenance.json`` (experiments.provenance.collect)."""

    data_digest: str
    format: int = PROVENANCE_FORMAT
    ad_repro: str | None = None
    git: GitState | None = None
    python: str | None = None
    libraries: dict[str, str | None] = {}
    cpu: CpuInfo | None = None
    gpu: GpuInfo | None = None
    device: str | None = None
    threads: Count | None = None
    executor: str | None = None
    knn_backend: str | None = None
    data_root: str | None = None
    layout: str | None = None
    data_files: Count | None = None
    image_bit_depth: dict[str, Annotated[int, Field(ge=1, le=16)] | None] = {}
    command: list[str] = []


def read_provenance(path: str | Path) -> dict[str, Any]:
    """``provenance.json``, strictly (FileNotFoundError passes: the caller says what its absence means)."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    parsed = convert(path, value, ProvenanceFile, RUN_FIX)
    check_format(path, parsed.format, PROVENANCE_FORMAT, "provenance record")
    if not HEX64.fullmatch(parsed.data_digest):
        raise _refuse(path, "field data_digest is not a SHA-256 (64 hex digits)", RUN_FIX)
    return value


def read_guard(path: str | Path) -> dict[str, Any]:
    """``run_config.json``: the configuration a ``--out`` folder is pinned to (a JSON object)."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent), GUARD_FIX)
    if not isinstance(value, dict):
        raise _refuse(path, f"is not a JSON object (got {type(value).__name__})", GUARD_FIX)
    return value


GUARD_FIX = ("it was truncated or edited: delete it (the next run records its configuration again) or choose "
             "another --out")


# -- splits files: <out>/splits/<category>.json ----------------------------------------------
SPLITS_FORMAT = "ad-repro-splits/1"
SPLITS_FIX = "delete it to remake it (or choose another --out)"


class SplitsFile(Strict):
    format: str
    category: str
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]
    train: list[str]
    val_normal: list[str]
    val_anomalous: list[str]
    test_normal: list[str]
    test_anomalous: list[str]
    protocol: str = "study"
    source: str | None = None
    rule: str | None = None
    counts: dict[str, Count] | None = None


def read_splits(path: str | Path):
    """A splits file (``ad_core.data.splits.save_splits``), strictly, as ``Splits``."""
    from ad_core.data.splits import PROTOCOLS, Splits

    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    if isinstance(value, dict) and value.get("format") != SPLITS_FORMAT:
        raise _refuse(path, f"is not an ad-repro splits file (format {str(value.get('format'))[:40]!r}, "
                            f"expected {SPLITS_FORMAT!r})", SPLITS_FIX)
    parsed = convert(path, value, SplitsFile, SPLITS_FIX)
    if parsed.protocol not in PROTOCOLS:
        raise _refuse(path, f"field protocol {parsed.protocol[:40]!r} is not one of {', '.join(PROTOCOLS)}",
                      SPLITS_FIX)
    for name in ("train", "val_normal", "val_anomalous", "test_normal", "test_anomalous"):
        for rel in getattr(parsed, name):
            parts = rel.split("/")
            if len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or "\\" in rel or "\0" in rel:
                raise _refuse(path, f"field {name} holds {rel[:60]!r}, not a path inside the category", SPLITS_FIX)
    return Splits(category=parsed.category, seed=parsed.seed, train=list(parsed.train),
                  val_normal=list(parsed.val_normal), val_anomalous=list(parsed.val_anomalous),
                  test_normal=list(parsed.test_normal), test_anomalous=list(parsed.test_anomalous),
                  protocol=parsed.protocol, source=parsed.source)


# -- names built into paths -------------------------------------------------------------------
def plain_name(value: object, what: str, source: str) -> str:
    """``value`` when it is one plain file-name component (no separator, no '.' / '..', no NUL, not
    empty, UTF-8-encodable, at most 255 bytes), else ``FileFormatError`` naming ``source`` and ``what``.

    The one check of every path part built from a file's content or an option (scenario, category,
    file names): ``run``, ``prepare``, ``golden record``, ``compare``, report and artifacts."""
    ok = isinstance(value, str) and value not in ("", ".", "..") and not any(c in value for c in "/\\\0")
    if ok:
        try:
            ok = len(value.encode("utf-8")) <= 255
        except UnicodeEncodeError:
            ok = False
    if not ok:
        raise FileFormatError(f"{source}: {what} {str(value)[:60]!r} is not one plain name (no '/', '\\', "
                              "'.' or '..', at most 255 bytes of UTF-8); rename it")
    return value  # type: ignore[return-value]


# -- run configurations: <out>/config.json, a golden folder's config.json (run --config) -------
CONFIG_FORMAT = 1
CONFIG_FIX = "record it again (ad-repro golden record RUN DEST) or fix that field"
Unset = None  # a field absent from the file: RunConfig's default (pydantic does not validate defaults)


class ConfigFile(Strict):
    """Every RunConfig field, each optional; types exact (``null`` only where the setting allows it)."""

    format: int = CONFIG_FORMAT
    # the study's settings: a recorded configuration sets these
    dataset: str = Unset
    layout: str = Unset
    categories: list[str] | None = Unset
    scenarios: list[str] | None = Unset
    methods: list[str] = Unset
    preset: str = Unset
    backbone: str | None = Unset
    weights: str | None = Unset  # a name (torchvision, package, random) is a setting; a file path is not
    knn_backend: str = Unset
    seed: int = Unset
    batch_size: int = Unset
    coreset_ratio: float = Unset
    k: int = Unset
    projection_dim: int = Unset
    padim_features: int | None = Unset
    patchcore_reweighting: str = Unset
    patchcore_blur: float | None = Unset
    patchcore_embedding: str = Unset
    image_size: int = Unset
    resize: int | None = Unset
    split: str = Unset
    threshold: str = Unset
    threshold_fpr: float = Unset
    bootstrap: bool = Unset
    # where and how the run executes, and what it reads and writes: never taken from a file
    out: str = Unset
    data: str | None = Unset
    device: str = Unset
    executor: str = Unset
    scheduler: str | None = Unset
    workers: int = Unset
    threads: int | None = Unset
    feature_cache: str | None = Unset
    feature_memory_gb: float = Unset
    progress: bool = Unset


def read_config(path: str | Path) -> dict[str, Any]:
    """The fields a configuration file sets (as written), strictly typed; ``format`` checked and dropped."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    parsed = convert(path, value, ConfigFile, CONFIG_FIX)
    check_format(path, parsed.format, CONFIG_FORMAT, "run configuration")
    for name in parsed.categories or []:
        plain_name(name, "field categories: the category", str(path))
    fields = parsed.model_dump(exclude_unset=True)
    fields.pop("format", None)
    return fields
