"""Reading and writing the UCI Bank Marketing files exactly as published (Moro, Cortez & Rita 2014).

Two layouts, told apart by their header (exactly these columns, in this order, or a ``DataError``
listing the missing and unexpected columns):

* ``bank-full.csv`` (and its 10 % sample ``bank.csv``): 17 columns with ``balance`` and ``day``;
  ``pdays`` −1 means not previously contacted.
* ``bank-additional-full.csv`` (and ``bank-additional.csv``): 21 columns with ``day_of_week`` and five
  socio-economic indicators (``emp.var.rate`` … ``nr.employed``, here ``emp_var_rate`` …);
  ``pdays`` 999 means not previously contacted.

Both are ``;``-separated with the header and string values in double quotes; ``.csv.gz`` works too.
Files are streamed in chunks of ``chunk_rows`` rows, so a file too large for memory is read chunk by
chunk. ``contact_id`` is the 1-based data row number (line number − 1), stable across re-reads;
``client_id`` is null (the files carry no client key); ``pdays`` −1 and 999 become null. A value that is
not a number in a numeric column is a ``DataError`` naming the file, row, column and value.

Date reconstruction. The rows are published in time order (May 2008 → Nov 2010) but carry no year.
Going down the rows:

1. Year. The first row is in ``first_year`` (2008). A row whose month is the previous row's month or
   later in the calendar stays in the previous row's year; an earlier month starts the next year
   (rollover: ``dec`` → ``jan``, ``nov`` → ``mar``).
2. Gaps. A step of more than ``max_gap_months`` (6) months forward from the previous row's month,
   counted across the year end (``nov`` → ``mar`` is 4 months, ``jun`` → ``may`` is 11), is not a time
   order: a ``DataError`` naming the file, the 1-based data row, its line, the month and the previous
   month.
3. bank-full (``day``): the date is (year, month, day). Within the same month, a day lower than the
   previous row's day is not a time order, and a day the month does not have (31 ``jun``) is not a
   date: both are a ``DataError`` naming the row.
4. bank-additional (``day_of_week`` only): the first row of a month gets the first date in that month
   falling on its weekday. Each later row of the same month walks from the previous row's date: the
   same weekday keeps the date, a later weekday moves forward within the same week, an earlier weekday
   moves to that weekday of the next week. A walk that would leave the month is clamped to the last
   date in the month with that weekday, and the walk goes on from the clamped date (which can precede
   the previous row's date). The walk assumes every week of a month has contacts: a week without rows
   shifts the month's later dates a week early.
5. ``contact_at`` is that date at 00:00 UTC.

The 10 % samples (``bank.csv``, ``bank-additional.csv``) were drawn at random and are not published in
time order, so reading them stops with a ``DataError`` at the first step back in time.

Macro (bank-additional only): one ``macro`` row per distinct contact date, ``published_at`` = that date
00:00 UTC, with the indicators of the first contact of that date in file order. The published indicators
are constant within a day; where they are not, the first row's values are kept in ``macro`` and each
contact keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from flywheel.data.ingest import read_csv_header
from flywheel.data.schema import TIMESTAMP
from flywheel.errors import DataError
from flywheel.usecases.bank.tables import (
    CONTACTS,
    DAYS_OF_WEEK,
    EDUCATION_ADDITIONAL,
    EDUCATION_FULL,
    INDICATORS,
    MACRO,
    MONTHS,
    POUTCOME_ADDITIONAL,
    POUTCOME_FULL,
)

COMMON_HEAD = ("age", "job", "marital", "education", "default")
FULL_COLUMNS = (
    *COMMON_HEAD,
    "balance",
    "housing",
    "loan",
    "contact",
    "day",
    "month",
    "duration",
    "campaign",
    "pdays",
    "previous",
    "poutcome",
    "y",
)
ADDITIONAL_COLUMNS = (
    *COMMON_HEAD,
    "housing",
    "loan",
    "contact",
    "month",
    "day_of_week",
    "duration",
    "campaign",
    "pdays",
    "previous",
    "poutcome",
    "emp.var.rate",
    "cons.price.idx",
    "cons.conf.idx",
    "euribor3m",
    "nr.employed",
    "y",
)
INTEGER_COLUMNS = frozenset({"age", "day", "duration", "campaign", "pdays", "previous"})
PUBLISHED = {name.replace(".", "_"): name for name in (*FULL_COLUMNS, *ADDITIONAL_COLUMNS)}
NOT_CONTACTED = (-1, 999)  # pdays of a client not contacted in an earlier campaign (full, additional)
BYTES_PER_ROW = 256  # sizes the CSV reader's blocks; chunks are cut at exactly chunk_rows rows anyway
INTEGER_PATTERN = r"^-?[0-9]+$"
FLOAT_PATTERN = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


@dataclass(frozen=True)
class Layout:
    """One published file layout: its columns and how it spells "not previously contacted"."""

    name: Literal["full", "additional"]
    columns: tuple[str, ...]
    not_contacted: int
    education: tuple[str, ...]
    poutcome: tuple[str, ...]

    @property
    def dated_by_day(self) -> bool:
        return "day" in self.columns


LAYOUTS = {
    "full": Layout("full", FULL_COLUMNS, -1, EDUCATION_FULL, POUTCOME_FULL),
    "additional": Layout("additional", ADDITIONAL_COLUMNS, 999, EDUCATION_ADDITIONAL, POUTCOME_ADDITIONAL),
}
# What write_uci writes for a value of the other layout's vocabulary (education is coarser in bank-full).
TRANSLATIONS = {
    "full": {
        "education": {
            "basic.4y": "primary",
            "basic.6y": "primary",
            "illiterate": "primary",
            "basic.9y": "secondary",
            "high.school": "secondary",
            "professional.course": "secondary",
            "university.degree": "tertiary",
        },
        "poutcome": {"nonexistent": "unknown"},
    },
    "additional": {"education": {}, "poutcome": {"unknown": "nonexistent"}},
}


def _read_header(path: Path) -> list[str]:
    return read_csv_header(path, "UCI Bank Marketing", delimiter=";")


def detect_layout(path: Path, header: list[str]) -> Layout:
    """The layout whose published header ``header`` is, or a ``DataError`` saying how it differs."""
    for layout in LAYOUTS.values():
        if tuple(header) == layout.columns:
            return layout
    closest = min(LAYOUTS.values(), key=lambda lay: len(set(lay.columns) ^ set(header)))
    missing = [name for name in closest.columns if name not in header]
    unexpected = [name for name in header if name not in closest.columns]
    detail = (
        f"missing columns {missing}, unexpected columns {unexpected}"
        if missing or unexpected
        else f"the columns are not in the published order {list(closest.columns)}"
    )
    raise DataError(
        f"{path}: header is not a UCI Bank Marketing layout (bank-full: 17 columns, bank-additional: 21); "
        f"compared with bank-{closest.name}: {detail}"
    )


def _raw_chunks(path: Path, header: list[str], chunk_rows: int) -> Iterator[pa.Table]:
    """The file's rows as strings, ``chunk_rows`` at a time (the last chunk may be shorter)."""
    reader_options = pacsv.ReadOptions(block_size=max(1 << 16, chunk_rows * BYTES_PER_ROW))
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header})
    try:
        reader = pacsv.open_csv(
            path, reader_options, pacsv.ParseOptions(delimiter=";"), convert_options=convert
        )
        pending: list[pa.RecordBatch] = []
        count = 0
        for batch in reader:
            pending.append(batch)
            count += batch.num_rows
            while count >= chunk_rows:
                table = pa.Table.from_batches(pending, reader.schema)
                yield table.slice(0, chunk_rows)
                rest = table.slice(chunk_rows)
                pending, count = rest.to_batches(), rest.num_rows
        if count:
            yield pa.Table.from_batches(pending, reader.schema)
    except pa.ArrowInvalid as error:
        raise DataError(f"{path}: not a readable UCI Bank Marketing CSV file ({error})") from None


def _first_false(
    path: Path, mask: pa.Array, column: pa.Array, first_row: int, name: str
) -> tuple[str, object]:
    """Where the first false value of ``mask`` is, and the value of ``column`` there."""
    index = int(np.flatnonzero(~mask.to_numpy(zero_copy_only=False))[0])
    row = first_row + index
    return f"{path}: row {row} (line {row + 1}): column '{name}'", column[index].as_py()


def _number(path: Path, column: pa.Array, first_row: int, name: str) -> pa.Array:
    integer = name in INTEGER_COLUMNS
    mask = pc.match_substring_regex(column, INTEGER_PATTERN if integer else FLOAT_PATTERN)
    if not pc.all(mask).as_py():
        where, value = _first_false(path, mask, column, first_row, name)
        raise DataError(f"{where} holds {value!r}; expected {'an integer' if integer else 'a number'}")
    try:
        return pc.cast(column, pa.int64() if integer else pa.float64())
    except pa.ArrowInvalid as error:
        raise DataError(f"{path}: column '{name}' holds a number out of range ({error})") from None


def _codes(
    path: Path, column: pa.Array, first_row: int, name: str, vocabulary: tuple[str, ...]
) -> np.ndarray:
    codes = pc.index_in(column, value_set=pa.array(vocabulary))
    if codes.null_count:
        where, value = _first_false(path, pc.is_valid(codes), column, first_row, name)
        raise DataError(f"{where} holds {value!r}; expected one of {', '.join(vocabulary)}")
    return codes.to_numpy()


class DateWalker:
    """Reconstructs contact dates row by row (see the module docstring); keeps its place across chunks."""

    def __init__(self, path: Path, layout: Layout, first_year: int, max_gap_months: int):
        self.path, self.layout = path, layout
        self.first_year, self.max_gap_months = first_year, max_gap_months
        self.previous: date | None = None

    def dates(self, rows: np.ndarray, months: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Dates of rows with ``months`` (1–12) and ``values`` (day 1–31, or weekday 0 = mon)."""
        if rows.size == 0:
            return np.array([], dtype="datetime64[D]")
        keys = months * 100 + values
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])  # rows of a run share their date
        run_dates = [self._step(int(rows[i]), int(months[i]), int(values[i])) for i in starts]
        lengths = np.diff(np.r_[starts, keys.size])
        return np.repeat(np.array(run_dates, dtype="datetime64[D]"), lengths)

    def _where(self, row: int) -> str:
        return f"{self.path}: row {row} (line {row + 1})"

    def _step(self, row: int, month: int, value: int) -> date:
        year = self._year(row, month)
        if self.layout.dated_by_day:
            current = self._dated_by_day(row, year, month, value)
        else:
            current = self._walked(year, month, value)
        self.previous = current
        return current

    def _year(self, row: int, month: int) -> int:
        if self.previous is None:
            return self.first_year
        step = (month - self.previous.month) % 12
        if step > self.max_gap_months:
            raise DataError(
                f"{self._where(row)}: month '{MONTHS[month - 1]}' after '{MONTHS[self.previous.month - 1]}' "
                f"would skip {step} months; the rows must be in time order (May 2008 → Nov 2010)"
            )
        return self.previous.year + (month < self.previous.month)

    def _dated_by_day(self, row: int, year: int, month: int, day: int) -> date:
        previous = self.previous
        if previous is not None and month == previous.month and day < previous.day:
            raise DataError(
                f"{self._where(row)}: day {day} after day {previous.day} of '{MONTHS[month - 1]}'; "
                "the rows must be in time order (May 2008 → Nov 2010)"
            )
        try:
            return date(year, month, day)
        except ValueError:
            raise DataError(
                f"{self._where(row)}: day {day} of '{MONTHS[month - 1]}' {year} is not a date"
            ) from None

    def _walked(self, year: int, month: int, weekday: int) -> date:
        if self.previous is None or month != self.previous.month:
            first = date(year, month, 1)
            return first + timedelta(days=(weekday - first.weekday()) % 7)
        walked = self.previous + timedelta(days=(weekday - self.previous.weekday()) % 7)
        return walked if walked.month == month else walked - timedelta(days=7)


def _contacts_chunk(
    path: Path, layout: Layout, raw: pa.Table, first_row: int, walker: DateWalker
) -> pa.Table:
    n = raw.num_rows
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    months = _codes(path, raw.column("month").combine_chunks(), first_row, "month", MONTHS) + 1
    if layout.dated_by_day:
        values = _number(path, raw.column("day").combine_chunks(), first_row, "day").to_numpy()
    else:
        day_of_week = raw.column("day_of_week").combine_chunks()
        values = _codes(path, day_of_week, first_row, "day_of_week", DAYS_OF_WEEK)
    dates = walker.dates(rows, months.astype(np.int64), values.astype(np.int64))
    columns: dict[str, pa.Array] = {
        "contact_id": pa.array(rows),
        "client_id": pa.nulls(n, pa.int64()),
        "contact_at": pa.array(dates.astype("datetime64[us]")).cast(TIMESTAMP),
    }
    for spec in CONTACTS.columns[3:]:
        published = PUBLISHED.get(spec.name)
        if published not in layout.columns:
            columns[spec.name] = pa.nulls(n, spec.type)
            continue
        column = raw.column(published).combine_chunks()
        if spec.type != pa.string():
            column = _number(path, column, first_row, published)
        columns[spec.name] = column
    pdays = columns["pdays"]
    columns["pdays"] = pc.if_else(
        pc.is_in(pdays, pa.array(NOT_CONTACTED)), pa.scalar(None, pa.int64()), pdays
    )
    return pa.table(columns, schema=CONTACTS.arrow_schema)


def _open(
    path: Path, first_year: int, chunk_rows: int, max_gap_months: int
) -> tuple[Layout, Iterator[pa.Table]]:
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be at least 1, got {chunk_rows}")
    path = Path(path)
    header = _read_header(path)
    layout = detect_layout(path, header)

    def chunks() -> Iterator[pa.Table]:
        walker = DateWalker(path, layout, first_year, max_gap_months)
        first_row = 1
        for raw in _raw_chunks(path, header, chunk_rows):
            yield _contacts_chunk(path, layout, raw, first_row, walker)
            first_row += raw.num_rows

    return layout, chunks()


def iter_uci(
    path: Path, first_year: int = 2008, chunk_rows: int = 100_000, max_gap_months: int = 6
) -> Iterator[pa.Table]:
    """Contacts of a published UCI file, ``chunk_rows`` rows at a time, dates carried across chunks.

    Args:
        path: A ``bank-full.csv``- or ``bank-additional-full.csv``-layout file (``.csv`` or ``.csv.gz``).
        first_year: The year of the first row.
        chunk_rows: Rows per yielded table (the last may be shorter).
        max_gap_months: The largest step forward between consecutive rows' months.

    Yields:
        Tables with the ``contacts`` schema.

    Raises:
        DataError: The header is not a published layout, a value is not a number where one is expected,
            or the rows are not in time order.
    """
    _, chunks = _open(path, first_year, chunk_rows, max_gap_months)
    yield from chunks


def macro_from_contacts(contacts: pa.Table) -> pa.Table:
    """One ``macro`` row per distinct contact date: the indicators of the date's first contact."""
    carrying = contacts.filter(pc.is_valid(contacts.column("emp_var_rate")))
    at = carrying.column("contact_at")
    _, first = np.unique(pc.cast(at, pa.int64()).to_numpy(), return_index=True)
    index = pa.array(first)
    columns = [at.take(index), *(carrying.column(name).take(index) for name in INDICATORS)]
    return pa.Table.from_arrays(columns, schema=MACRO.arrow_schema)


def read_uci(
    path: Path, first_year: int = 2008, chunk_rows: int = 100_000, max_gap_months: int = 6
) -> dict[str, pa.Table]:
    """A published UCI file as lake tables: ``contacts``, plus ``macro`` for the additional layout.

    Args:
        path: A ``bank-full.csv``- or ``bank-additional-full.csv``-layout file (``.csv`` or ``.csv.gz``).
        first_year: The year of the first row.
        chunk_rows: Rows converted at a time.
        max_gap_months: The largest step forward between consecutive rows' months.

    Returns:
        ``{"contacts": ...}`` for bank-full, ``{"contacts": ..., "macro": ...}`` for bank-additional.

    Raises:
        DataError: As :func:`iter_uci`.
    """
    layout, chunks = _open(path, first_year, chunk_rows, max_gap_months)
    contacts = pa.concat_tables([CONTACTS.arrow_schema.empty_table(), *chunks]).combine_chunks()
    if layout.name == "full":
        return {"contacts": contacts}
    return {"contacts": contacts, "macro": macro_from_contacts(contacts)}


def _published_column(contacts: pa.Table, path: Path, layout: Layout, published: str) -> pa.ChunkedArray:
    name = published.replace(".", "_")
    if name not in contacts.column_names:
        raise DataError(f"{path}: cannot write the {layout.name} layout: contacts have no column '{name}'")
    column = contacts.column(name)
    if name == "pdays":
        column = column.fill_null(layout.not_contacted)
    translations = TRANSLATIONS[layout.name].get(name)
    if translations is not None:
        column = _translated(column, translations, getattr(layout, name), path, layout, name)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
        raise DataError(
            f"{path}: cannot write the {layout.name} layout: column '{name}' is null in row {row} "
            f"({column.null_count} rows); the published layout has no empty values"
        )
    return column


def _translated(
    column: pa.ChunkedArray,
    translations: dict[str, str],
    vocabulary: tuple[str, ...],
    path: Path,
    layout: Layout,
    name: str,
) -> pa.ChunkedArray:
    for source, target in translations.items():
        column = pc.if_else(pc.equal(column, source), target, column)
    known = pc.or_kleene(pc.is_null(column), pc.is_in(column, pa.array(vocabulary)))
    outside = pc.filter(column, pc.invert(known))
    if len(outside):
        values = sorted(set(outside.to_pylist()))
        raise DataError(
            f"{path}: cannot write the {layout.name} layout: column '{name}' holds {values}, "
            f"which the layout cannot express; expected one of {', '.join(vocabulary)}"
        )
    return column


def write_uci(contacts: pa.Table, path: Path, layout: Literal["full", "additional"]) -> None:
    """Write ``contacts`` in a published layout: quoted header and strings, bare numbers, ``;``.

    ``contact_id``, ``client_id``, ``contact_at`` and the other layout's columns are dropped; a null
    ``pdays`` is written as −1 (full) or 999 (additional), and values of the other layout's vocabulary
    are translated (``TRANSLATIONS``: e.g. poutcome ``nonexistent`` → ``unknown`` and education
    ``basic.9y`` → ``secondary`` in bank-full). A ``.gz`` path is gzip-compressed.

    Raises:
        DataError: ``layout`` is unknown, a column is missing or null, or a value cannot be expressed.
    """
    if layout not in LAYOUTS:
        raise DataError(f"unknown UCI layout '{layout}'; expected one of: {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout]
    path = Path(path)
    table = pa.table({name: _published_column(contacts, path, spec, name) for name in spec.columns})
    options = pacsv.WriteOptions(delimiter=";", quoting_style="needed")
    if path.name.endswith(".gz"):
        with pa.CompressedOutputStream(str(path), "gzip") as sink:
            pacsv.write_csv(table, sink, options)
    else:
        pacsv.write_csv(table, path, options)
