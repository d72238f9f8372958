"""Personal data in published files: the generic masking a use case's ``pii`` rules ask for.

A use case names the personal columns of its published layout (``UseCase.pii``: column → ``drop`` or
``hash``). ``drop`` removes the column; ``hash`` replaces it with ``<column>_hash``, a pseudonym: the
first ``HASH_CHARS`` hex digits of sha256(salt + value), so that the same person hashes the same
across files and batches while the value itself is never stored. Nulls stay null.

The salt comes from the environment variable ``FLYWHEEL_PII_SALT``; without it a fixed default is
used, which keeps hashes stable but lets anyone who knows the default test guesses (a 9-digit SSN
space is small): set the variable in production and keep it secret, and never change it for a lake
that already holds hashes (joins across batches would break).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

SALT_ENV = "FLYWHEEL_PII_SALT"
DEFAULT_SALT = "flywheel-pii-v1"
HASH_CHARS = 16
PiiRule = Literal["drop", "hash"]


def salt() -> str:
    """The salt of the pseudonyms: ``FLYWHEEL_PII_SALT``, else the default."""
    return os.environ.get(SALT_ENV) or DEFAULT_SALT


def hashed_name(column: str) -> str:
    """The name of a hashed column's pseudonym column."""
    return f"{column}_hash"


def pseudonym(value: str, salt_value: str | None = None) -> str:
    """The salted sha256 hex prefix of one value."""
    digest = hashlib.sha256(f"{salt_value if salt_value is not None else salt()}{value}".encode())
    return digest.hexdigest()[:HASH_CHARS]


def pseudonymize(values: pa.Array | pa.ChunkedArray, salt_value: str | None = None) -> pa.Array:
    """Pseudonyms of ``values`` (hashed once per distinct value; nulls stay null)."""
    salt_value = salt_value if salt_value is not None else salt()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(pc.cast(values, pa.string()))
    hashed = pa.array([pseudonym(v, salt_value) for v in encoded.dictionary.to_pylist()], pa.string())
    return hashed.take(encoded.indices)


def _check(rules: Mapping[str, str]) -> None:
    unknown = {rule for rule in rules.values() if rule not in ("drop", "hash")}
    if unknown:
        raise ValueError(f"unknown pii rule(s) {sorted(unknown)}; expected drop or hash")


def mask_table(table: pa.Table, rules: Mapping[str, PiiRule], salt_value: str | None = None) -> pa.Table:
    """``table`` with the ``drop`` columns removed and each ``hash`` column replaced, in place, by its
    pseudonym column; columns the table does not have are skipped."""
    _check(rules)
    for column, rule in rules.items():
        if column not in table.column_names:
            continue
        index = table.schema.get_field_index(column)
        if rule == "drop":
            table = table.remove_column(index)
        else:
            table = table.set_column(
                index, hashed_name(column), pseudonymize(table.column(column), salt_value)
            )
    return table


def mask_records(
    records: Iterable[Mapping[str, Any]], rules: Mapping[str, PiiRule], salt_value: str | None = None
) -> list[dict[str, Any]]:
    """Records (e.g. a report's example rows) masked as :func:`mask_table` masks a table."""
    _check(rules)
    salt_value = salt_value if salt_value is not None else salt()
    masked = []
    for record in records:
        row: dict[str, Any] = {}
        for column, value in record.items():
            rule = rules.get(column)
            if rule is None:
                row[column] = value
            elif rule == "hash":
                row[hashed_name(column)] = None if value is None else pseudonym(str(value), salt_value)
        masked.append(row)
    return masked
