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
(``methods.padim.coffee.threshold``; msgspec says ``methods[...]`` for mapping keys), strict mode
refuses every coercion (``"false"``, ``1.0`` for an integer, ``true`` for a number), and it is
well kept.  Any failure is a ``FileFormatError``: one line naming the file, the field and what
to do; the CLI prints it and exits 2.
"""

from ad_core.data.records import (
    MAX_BYTES,
    Strict,
    check_format,
    convert,
    describe_error,
    one_line,
    open_regular,
    parse_json,
    read,
)
from ad_core.errors import FileFormatError
from experiments.readers.core import plain_name
from experiments.readers.golden import GOLDEN_FORMAT, GoldenFile, read_drift, read_golden
from experiments.readers.run_folder import (
    PROVENANCE_FORMAT,
    RESULTS_FORMAT,
    read_checksums,
    read_guard,
    read_provenance,
    read_results,
)
from experiments.readers.splits import read_splits

__all__ = ["GOLDEN_FORMAT", "MAX_BYTES", "PROVENANCE_FORMAT", "RESULTS_FORMAT", "FileFormatError", "GoldenFile",
           "Strict", "check_format", "convert", "describe_error", "one_line", "open_regular", "parse_json",
           "plain_name", "read", "read_checksums", "read_drift", "read_golden", "read_guard", "read_provenance",
           "read_results", "read_splits"]
