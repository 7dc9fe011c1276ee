"""Untrusted files → contract dtypes, reporting instead of crashing.

External CSV or Parquet files carry ids as text, timestamps as ISO strings or float seconds,
empty cells, and worse. :func:`coerce_raw_frame` casts one table to the contract dtypes and
raises :class:`DataValidationError` naming every value it could not cast (``integer``,
``numeric``, ``parseable timestamp``, ``missing column``). :func:`read_dataset_files` reads a
directory of ``{interactions,users,items}.{parquet,csv,tsv}`` and returns what it could build plus
the findings, so the caller can report everything at once. A CSV/TSV file whose header names a
contract column twice (``duplicate column``) or whose values span lines (``unclosed quote``) is
refused whole: what it holds cannot be told apart from what it was meant to hold. Files as
spreadsheets and Spark save them are refused with what to change: not UTF-8 (``encoding``),
another separator (``separator``), a compressed file or a directory of part files in place of
the table's file (``missing file``). File names are matched ignoring case (``Interactions.CSV``),
as a case-insensitive file system does. A NUL byte refuses a CSV/TSV file (``encoding``): pandas
would end a value at it.

Parquet from Spark, DuckDB, Polars or Hive is read by its types
(:mod:`recsys.data.parquet_table`), then cast here: timestamps of any unit and zone, dates
(midnight UTC), integers of any width, decimals. Ids and timestamps in a floating-point type
beyond the whole numbers it holds exactly (float32: 2**24) are ``precision`` findings, since the
writer may have rounded them. Text date-times without an offset are UTC, as Parquet timestamps
without a zone are.
"""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.errors import DataValidationError
from recsys.data.findings import Finding, finding_of, missing_columns, repeated_columns
from recsys.data.parquet_table import read_parquet_table
from recsys.data.schema import TABLES, TableSpec

__all__ = ["FILE_SUFFIXES", "coerce_frame", "coerce_raw_frame", "find_table_file",
           "read_table_file", "read_dataset_files", "to_seconds"]

FILE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".tsv")


#: The end of an ISO-8601 date-time that carries its offset: ``Z`` or ``±hh[[:]mm]`` after a
#: time (a date alone, ``2001-09-09``, ends in a day, not an offset).
_OFFSET = r"(?i)(?:z|[T ].*\d[+-]\d{2}(?::?\d{2})?)$"


def to_seconds(raw: pd.Series) -> pd.Series:
    """Unix seconds (float, NaN where unparseable) from numbers, numeric text, ISO text or
    datetimes."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        if isinstance(raw.dtype, pd.ArrowDtype):
            raw = _numpy_datetimes(raw)
        # as_unit("s"), not astype(int64) // 10**9: a Parquet timestamp column reads in its own
        # unit (ms from pyarrow/pandas writers, us from Spark, DuckDB and Polars), not always ns
        stamps = pd.to_datetime(raw, utc=True).dt.floor("s").dt.as_unit("s")
        return pd.Series(stamps.astype("int64"), index=raw.index, dtype="float64").where(
            stamps.notna())
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw):
        return raw.astype("float64")
    numeric = pd.to_numeric(raw, errors="coerce")
    text = raw[numeric.isna() & raw.notna()].astype(str).str.strip()
    if len(text):
        # pandas' ISO-8601 parser gives a date-time without an offset the offset of the last
        # one parsed before it that had one ("…T03:00+02:00" then "…T01:00" read as 23:00 UTC):
        # the two kinds are parsed apart, so one without an offset is UTC wherever it stands
        aware = text.str.contains(_OFFSET, regex=True)
        parsed = pd.concat([pd.to_datetime(text[mask], utc=True, errors="coerce",
                                           format="ISO8601") for mask in (aware, ~aware)
                            if mask.any()]).reindex(text.index)
        seconds = pd.Series(np.nan, index=text.index)
        ok = parsed.notna()
        seconds[ok] = parsed[ok].dt.floor("s").dt.as_unit("s").astype("int64")
        numeric = numeric.astype("float64")
        numeric[text.index] = seconds
    return numeric.astype("float64")


def _numpy_datetimes(raw: pd.Series) -> pd.Series:
    """An Arrow-backed timestamp or date column (``timestamp[us][pyarrow]``: pandas' metadata
    brings one back from a file written from an Arrow-backed frame) as numpy datetimes of its
    own unit, naive in UTC (Arrow stores instants in UTC whatever the zone). pandas converts
    them through nanoseconds, where a time past 2262 (the 9999-12-31 "no end" placeholder)
    raised OutOfBoundsDatetime instead of being found out of range."""
    import pyarrow as pa

    values = pa.chunked_array(pa.array(raw.array)).combine_chunks()
    if not pa.types.is_timestamp(values.type):  # date32, date64: midnight UTC
        values = values.cast(pa.timestamp("s"))
    values = values.cast(pa.timestamp(values.type.unit))  # its zone dropped, values in UTC
    return pd.Series(values.to_numpy(zero_copy_only=False), index=raw.index)


_INT64 = np.iinfo(np.int64)
_TWO_63 = 2.0 ** 63


def _to_int64(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(nullable Int64 values, mask of non-null values that are not whole numbers in the int64
    range). Exact: integers, in a file's integer column or as text, never pass through float64,
    which changes every id above 2**53 (64-bit ids from an event system: a user's id in the
    model would no longer be the id the product sends, and near ids would merge)."""
    no_junk = pd.Series(False, index=raw.index)
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("Int64"), no_junk
    if pd.api.types.is_integer_dtype(raw.dtype):
        if raw.dtype.kind == "u" or str(raw.dtype).startswith("UInt"):
            junk = (raw > _INT64.max).fillna(False).astype(bool)
            return raw.where(~junk).astype("Int64"), junk
        return raw.astype("Int64"), no_junk
    n = len(raw)
    data, known = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    junk = np.zeros(n, dtype=bool)
    if pd.api.types.is_float_dtype(raw.dtype):
        floats = raw.to_numpy(dtype="float64", na_value=np.nan)
    else:  # text or objects: whole-number text is parsed exactly, the rest as numbers
        parsed = pd.to_numeric(raw, errors="coerce")
        if parsed.dtype.kind == "i":  # the common case: every value an int64, read exactly
            return parsed.astype("Int64"), no_junk
        text = raw.astype("string").str.strip()
        integral = text.str.fullmatch(r"[+-]?\d+").fillna(False).to_numpy(dtype=bool)
        if integral.any():
            rows = np.flatnonzero(integral)
            ints = pd.to_numeric(text[integral], errors="coerce")
            if ints.dtype.kind == "i":  # every one fits in int64: parsed exactly
                data[rows], known[rows] = ints.to_numpy(), True
            else:  # some beyond int64 (pandas went to uint64, float or objects)
                exact = [int(t) for t in text[integral]]
                fits = np.array([_INT64.min <= v <= _INT64.max for v in exact], dtype=bool)
                data[rows[fits]] = np.array([v for v, ok in zip(exact, fits) if ok],
                                            dtype=np.int64)
                known[rows[fits]] = True
                junk[rows[~fits]] = True
        floats = pd.to_numeric(raw.where(~integral), errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan)
        junk |= np.isnan(floats) & raw.notna().to_numpy() & ~integral
    finite = np.isfinite(floats)
    whole = finite & (np.mod(floats, 1, where=finite, out=np.ones(n)) == 0) \
        & (floats >= -_TWO_63) & (floats < _TWO_63)
    junk |= ~np.isnan(floats) & ~whole
    data[whole] = floats[whole].astype(np.int64)
    known |= whole
    values = pd.Series(pd.arrays.IntegerArray(data, ~known), index=raw.index)
    return values, pd.Series(junk, index=raw.index)


def _rounded(spec: TableSpec, column: str, raw: pd.Series, findings: list[Finding]) -> pd.Series:
    """Mask of the values of a binary floating-point column (Parquet ``float``/``double``)
    from where its type no longer holds every whole number (2**24 in float32, 2**53 in float64):
    the writer may have rounded them (user 16777217 saved as float32 is 16777216), so the
    value meant is lost, and is reported (``precision``) rather than loaded as another id or
    instant. Timestamps are checked in float32 and float16 only: float64 holds seconds exactly
    far beyond now, and nanoseconds in it are found out of range with the unit to divide by."""
    kind = raw.dtype.numpy_dtype if hasattr(raw.dtype, "numpy_dtype") else raw.dtype
    no = pd.Series(False, index=raw.index)
    if kind.kind != "f" or (column == "timestamp" and kind.itemsize > 4):
        return no
    bits = np.finfo(kind).nmant + 1
    rounded = (raw.abs() >= 2 ** bits).fillna(False).astype(bool)
    if not rounded.any():
        return no
    stored = "int64 seconds or a timestamp" if column == "timestamp" else "an integer type"
    findings.append(finding_of(spec.name, column, "precision", rounded, raw,
                               f"stored as {kind}, which tells whole numbers apart only "
                               f"below 2**{bits} ({2 ** bits}): these may have been rounded when "
                               f"the file was written, the values meant lost; store {column} as "
                               f"{stored}"))
    return rounded


def coerce_frame(frame: pd.DataFrame, spec: TableSpec) -> tuple[pd.DataFrame | None,
                                                                 list[Finding]]:
    """(frame cast as far as possible, findings). Values that could not be cast become missing
    and their column keeps a nullable dtype; ``None`` when a required column is absent."""
    findings = missing_columns(spec.name, spec.names, frame.columns, len(frame))
    if findings:
        return None, findings
    out: dict[str, object] = {}
    for col in spec.columns:
        raw = frame[col.name]
        if col.dtype == "string":
            out[col.name] = raw.astype("string")
            continue
        if col.name == "timestamp":
            values = to_seconds(raw)
            junk = values.isna() & raw.notna()
            if junk.any():
                findings.append(finding_of(spec.name, col.name, "parseable timestamp", junk, raw,
                                           "unix seconds or an ISO-8601 date-time"))
            rounded = _rounded(spec, col.name, raw, findings)
            values = np.floor(values.where(~rounded))
            junk = junk | rounded
        elif col.dtype == "int64":
            values, junk = _to_int64(raw)
            if junk.any():
                findings.append(finding_of(spec.name, col.name, "integer", junk, raw,
                                           "ids and counts must be whole numbers"))
            values = values.mask(_rounded(spec, col.name, raw, findings))
            if values.isna().any():
                out[col.name] = values
            else:
                out[col.name] = values.to_numpy(dtype="int64")
            continue
        else:
            values = pd.to_numeric(raw, errors="coerce").astype("float64")
            junk = values.isna() & raw.notna()
            if junk.any():
                findings.append(finding_of(spec.name, col.name, "numeric", junk, raw,
                                           "must be a number"))
            values = values.where(~junk)
        if values.isna().any() or junk.any():
            out[col.name] = values.astype("Int64" if col.dtype == "int64" else "Float32")
        else:
            out[col.name] = values.to_numpy(dtype=col.dtype)
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True), findings


def coerce_raw_frame(frame: pd.DataFrame, table: str | TableSpec) -> pd.DataFrame:
    """``frame`` cast to the contract dtypes of ``table``; raises :class:`DataValidationError`
    naming each column, rule and example value that could not be cast (or any null value)."""
    spec = TABLES[table] if isinstance(table, str) else table
    coerced, findings = coerce_frame(frame, spec)
    if coerced is not None:
        for column in coerced.columns:
            nulls = coerced[column].isna()
            if nulls.any() and not any(f.column == column for f in findings):
                findings.append(finding_of(spec.name, column, "not null", nulls,
                                           frame[column].reset_index(drop=True),
                                           "a value is required"))
    if findings or coerced is None:
        raise DataValidationError(findings, title=f"{spec.name}: cannot coerce to the contract")
    return coerced.astype(spec.dtypes)


def _header(path: Path, sep: str) -> list[str]:
    """The column names as the file's first line spells them: pandas renames a repeated name
    (``title``, ``title.1``), which hides that the file has two."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle, delimiter=sep), [])


#: What marks a missing number in exported files (R's NA, pandas' NaN and <NA>, SQL's NULL, …):
#: pandas' own default list. In a text column these are text, a title "None" included.
_NUMBER_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def _missing_markers(spec: TableSpec, header: list[str]) -> dict[str, list[str]]:
    """Per column, the cells read as missing: an empty one anywhere; in a number column
    (ids, rating, timestamp, year, age) also the usual markers of a missing number."""
    numeric = {c.name for c in spec.columns if c.dtype != "string"}
    return {name: _NUMBER_NA if name in numeric else [""] for name in header}


#: Separators spreadsheets write, as a message names them.
_SEPARATORS = {",": "','", "\t": "tab", ";": "';'", "|": "'|'"}


def _other_separator(path: Path, spec: TableSpec, header: list[str], sep: str) -> list[Finding]:
    """A file written with another separator (European Excel uses ``;``) reads as one column
    named after the whole header line: one finding saying so, rather than every contract
    column missing."""
    def known(names: list[str]) -> int:
        return sum(name.strip().lower() in spec.names for name in names)

    if all(name in header for name in spec.names):
        return []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        line = handle.readline()
    split = {other: next(csv.reader([line], delimiter=other), [])
             for other in _SEPARATORS if other != sep}
    other = max(split, key=lambda s: known(split[s]))
    if known(split[other]) <= known(header):
        return []
    shown = line.rstrip("\r\n")
    shown = shown if len(shown) <= 60 else shown[:60] + "…"
    seen = (f"is one column {shown!r}" if len(header) == 1
            else f"has {len(header)} columns, {shown!r}")
    if other == "\t" and path.suffix.lower() == ".csv":
        fix = f"name the file {spec.name}.tsv"
    elif other == "," and path.suffix.lower() == ".tsv":
        fix = f"name the file {spec.name}.csv"
    else:
        fix = "use ',' (.csv) or tab (.tsv)"
    return [Finding(table=spec.name, column="*", rule="separator", bad_count=0,
                    detail=f"the header of {path.name} {seen}: the separator looks like "
                           f"{_SEPARATORS[other]}, {fix}")]


def _not_utf8(path: Path, spec: TableSpec) -> Finding:
    """Where the file stops being UTF-8, counted in the whole file (pandas' error counts in
    the block it was decoding). Excel saves Latin-1 ("CSV") or UTF-16 ("Unicode Text")."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines, where = 0, 1, ""
    with path.open("rb") as handle:
        start = handle.read(2)
        handle.seek(0)
        while not where:
            chunk = handle.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                data = exc.object
                lines += data[:exc.start].count(b"\n")
                where = (f"byte 0x{data[exc.start]:02x} at offset {offset - pending + exc.start}"
                         f", line {lines}")
            if not chunk:
                break
            offset += len(chunk)
            lines += chunk.count(b"\n")
    if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        where += "; it starts like UTF-16, Excel's 'Unicode Text'"
    elif b"\x00" in start:
        where += "; it looks like UTF-16 without a byte-order mark, Excel's 'Unicode Text'"
    return Finding(table=spec.name, column="*", rule="encoding", bad_count=0,
                   detail=f"{path.name} is not UTF-8 ({where}): save it as UTF-8 "
                          "(Excel: 'CSV UTF-8')")


def _unclosed_quotes(path: Path, spec: TableSpec, frame: pd.DataFrame) -> list[Finding]:
    """Values holding a line break. A value that starts with a quote runs to the next quote
    in the file, however many lines later: the rows in between become part of it, and the row
    takes the other values of the last one. Titles and labels never span lines, so such a
    value is taken for that, not loaded."""
    findings = []
    for column in frame.columns:
        if column not in spec.names:
            continue
        text = frame[column].astype("string")
        bad = text.str.contains("[\r\n]", regex=True).fillna(False).astype(bool)
        if bad.any():
            findings.append(finding_of(spec.name, column, "unclosed quote", bad,
                                       text.str.slice(0, 40),
                                       f"a value in {path.name} spans lines: a quote opened at "
                                       "its start and closed rows later joins those rows"))
    return findings


def _nul_byte(path: Path, spec: TableSpec) -> list[Finding]:
    """A NUL byte (0x00) is valid UTF-8 but no text holds one, and pandas' reader ends a value
    at it: "Am\\x00lie" loads as "Am", "10000\\x0001000" as 10000. A file saved as UTF-16
    without a byte-order mark (every other byte 0x00) loads as columns named "u", "Unnamed: 1".
    Either way the file is not what it holds: refused, naming where."""
    offset, lines = 0, 1
    with path.open("rb") as handle:
        start = handle.read(2)
        handle.seek(0)
        while chunk := handle.read(1 << 20):
            at = chunk.find(b"\x00")
            if at >= 0:
                lines += chunk[:at].count(b"\n")
                where = f"offset {offset + at}, line {lines}"
                break
            offset += len(chunk)
            lines += chunk.count(b"\n")
        else:
            return []
    hint = ("; it looks like UTF-16 without a byte-order mark, Excel's 'Unicode Text'"
            if b"\x00" in start else "")
    return [Finding(table=spec.name, column="*", rule="encoding", bad_count=0,
                    detail=f"{path.name} holds a NUL byte (0x00) at {where}{hint}: save it as "
                           "UTF-8 text (Excel: 'CSV UTF-8')")]


def read_table_file(path: Path, spec: TableSpec) -> tuple[pd.DataFrame | None, list[Finding]]:
    """Read one CSV/TSV/Parquet file as text-or-native columns; empty or unreadable files
    become findings rather than exceptions. In a CSV/TSV text column only an empty cell is
    missing ("NA", "None" or "null" are a title or a label as written); in a number column
    the usual markers of a missing number are missing too (``_NUMBER_NA``)."""
    path = Path(path)
    if path.stat().st_size == 0:
        return None, [Finding(table=spec.name, column="*", rule="empty file", bad_count=0,
                              detail=f"{path.name} is empty (0 bytes)")]
    suffix = path.suffix.lower()
    sep = "\t" if suffix == ".tsv" else ","
    try:
        if suffix == ".parquet":
            return read_parquet_table(path, spec)
        header = _header(path, sep)
        refused = (_other_separator(path, spec, header, sep)
                   or repeated_columns(spec.name, path.name, spec.names, header))
        if refused:
            return None, refused
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                            na_values=_missing_markers(spec, header))
    except UnicodeDecodeError:
        return None, [_not_utf8(path, spec)]
    except pd.errors.EmptyDataError:
        return None, [Finding(table=spec.name, column="*", rule="empty file", bad_count=0,
                              detail=f"{path.name} has no header and no rows")]
    except Exception as exc:  # noqa: BLE001 - any reader error is a finding about the file
        return None, [Finding(table=spec.name, column="*", rule="readable file", bad_count=0,
                              detail=f"{path.name}: {type(exc).__name__}: {exc}"[:300])]
    refused = _nul_byte(path, spec) or _unclosed_quotes(path, spec, frame)
    return (None, refused) if refused else (frame, [])


_COMPRESSED = (".gz", ".bz2", ".xz", ".zip", ".zst", ".7z")


def _entries(directory: Path, name: str) -> list[Path]:
    """What ``directory`` holds under the table's name (``interactions.*``), ignoring case."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.lower().startswith(f"{name}."))


def _find_files(directory: Path, name: str) -> list[Path]:
    names = [f"{name}{suffix}" for suffix in FILE_SUFFIXES]
    found = [p for p in _entries(directory, name) if p.name.lower() in names and p.is_file()]
    return sorted(found, key=lambda p: names.index(p.name.lower()))


def _not_read(directory: Path, name: str) -> list[str]:
    """What the directory holds for a table whose file is missing, each with what to do."""
    kinds = ", ".join(FILE_SUFFIXES[:-1]) + f" or {FILE_SUFFIXES[-1]}"
    hints = []
    for path in _entries(directory, name):
        if path.is_dir():
            hints.append(f"found {path.name}/, a directory (Spark writes one part file per "
                         "task): write the table as one file")
        elif path.name.lower().endswith(_COMPRESSED):
            hints.append(f"found {path.name}: decompress it (plain {kinds})")
        else:
            hints.append(f"found {path.name}: save it as {kinds}")
    return hints


def find_table_file(directory: Path, name: str) -> tuple[Path | None, list[Finding]]:
    """(the file of table ``name`` in ``directory``, ``[]``) or (``None``, the finding that
    says why there is none): ``missing file`` with what the directory holds instead, or
    ``ambiguous file`` when it holds the table twice (``interactions.csv`` and ``.tsv``). Every
    reader of a dataset directory finds its files here, so each accepts the same directory."""
    directory = Path(directory)
    paths = _find_files(directory, name)
    if not paths:
        return None, [Finding(
            table=name, column="*", rule="missing file", bad_count=0,
            detail="; ".join([f"no {name}{{{','.join(FILE_SUFFIXES)}}} in {directory}",
                              *_not_read(directory, name)]))]
    if len(paths) > 1:  # which one is the data? Not for us to pick silently
        return None, [Finding(
            table=name, column="*", rule="ambiguous file", bad_count=0,
            detail=f"{' and '.join(p.name for p in paths)} both in {directory}: keep one")]
    return paths[0], []


def read_dataset_files(directory: Path) -> tuple[dict[str, pd.DataFrame], list[Finding]]:
    """({table: coerced frame} for every table that could be read, coercion findings)."""
    directory = Path(directory)
    tables: dict[str, pd.DataFrame] = {}
    findings: list[Finding] = []
    for name, spec in TABLES.items():
        path, problems = find_table_file(directory, name)
        findings += problems
        if path is None:
            continue
        frame, problems = read_table_file(path, spec)
        findings += problems
        if frame is None:
            continue
        coerced, problems = coerce_frame(frame, spec)
        findings += problems
        if coerced is not None:
            tables[name] = coerced
    return tables, findings
