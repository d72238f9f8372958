"""Published identities of customers: ids, names and SSNs as the published layout spells them.

The lake never holds a name or an SSN (see ``UseCase.pii``). Generated data and files written back in
the published layout still need them, so they derive from the customer id alone, by a hash: the same
customer always gets the same name and SSN, whichever batch or file it appears in, and the SSN's
pseudonym in the lake (``ssn_hash``) is what the reader computes from the written file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from flywheel.data.pii import pseudonym

FIRST_NAMES = (
    "Aaron", "Alistair", "Amanda", "Ana", "Brian", "Carla", "Chen", "Daniel", "Deepa", "Elena",
    "Farid", "Grace", "Hiro", "Ines", "Jakub", "Jana", "Kofi", "Laura", "Malik", "Maria", "Nadia",
    "Omar", "Priya", "Rafael", "Sara", "Tomas", "Uma", "Victor", "Wei", "Yara",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
    "Khan", "Lopez", "Maashoh", "Novak", "Okafor", "Park", "Quinn", "Rossi", "Silva", "Tanaka",
    "Usman", "Varga", "Weber", "Xu", "Yilmaz", "Zhou",
)  # fmt: skip


def customer_ids(numbers: np.ndarray) -> pa.Array:
    """Published customer ids (``CUS_0x1a2b``) of customer numbers."""
    return pa.array([f"CUS_0x{n:x}" for n in numbers.tolist()], pa.string())


def record_ids(numbers: np.ndarray) -> pa.Array:
    """Published record ids (``0x1602``) of record numbers."""
    return pa.array([f"0x{n:x}" for n in numbers.tolist()], pa.string())


def _digest(customer_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"credit-identity:{customer_id}".encode()).digest()[:8], "big")


def ssn_of(customer_id: str) -> str:
    """A well-formed SSN (``821-00-0265``) derived from the customer id."""
    value = _digest(customer_id)
    area, group, serial = 1 + value % 899, 1 + (value >> 12) % 99, 1 + (value >> 24) % 9999
    return f"{area:03d}-{group:02d}-{serial:04d}"


def name_of(customer_id: str) -> str:
    """A name derived from the customer id."""
    value = _digest(customer_id)
    return f"{FIRST_NAMES[value % len(FIRST_NAMES)]} {LAST_NAMES[(value >> 16) % len(LAST_NAMES)]}"


def ssn_hashes(ids: Iterable[str]) -> dict[str, str]:
    """The lake's ``ssn_hash`` of each customer id's derived SSN."""
    return {customer_id: pseudonym(ssn_of(customer_id)) for customer_id in ids}
