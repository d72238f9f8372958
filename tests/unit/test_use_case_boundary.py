"""The platform never names a use case: everything churn- or theLook-specific lives in
``usecases/churn/`` (and the churn config), so another use case runs on the same code."""

from __future__ import annotations

import re
from pathlib import Path

import flywheel

PACKAGE = Path(flywheel.__file__).parent
CHURN_NAMES = re.compile(r"churn|customer|thelook|\border_items\b|\borders\b|\busers\.id\b", re.IGNORECASE)
# the few lines that must name a use case: the built-in registry (a line starting so), the default
# one, and the names an older prediction log used (read for compatibility)
ALLOWED = {
    (
        "usecases/__init__.py",
        'BUILT_IN = {"churn": "flywheel.usecases.churn", "bank": "flywheel.usecases.bank"',
    ),
    (
        "config.py",
        'DEFAULT_USE_CASE = "churn"  # what `flywheel` runs without a config: `make demo`\'s use case',
    ),
    (
        "serving/predlog.py",
        "# a log written before use cases were plug-ins names the entity and score columns after churn",
    ),
    ("serving/predlog.py", 'LEGACY_COLUMNS = {"entity_id": "customer_id", "score": "churn_probability"}'),
}


# the credit use case's entity is a customer too (of a bank, not of theLook): the word is its own
OWN_WORDS_FOLDER, OWN_WORDS = "usecases/credit/", re.compile(r"customer", re.IGNORECASE)


def test_no_churn_or_thelook_name_outside_its_use_case() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.suffix not in (".py", ".sql") or relative.startswith("usecases/churn/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if relative.startswith(OWN_WORDS_FOLDER):  # another use case's own domain word
                line = OWN_WORDS.sub("", line)
            allowed = any(relative == at and line.strip().startswith(text) for at, text in ALLOWED)
            if CHURN_NAMES.search(line) and not allowed:
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "churn names outside usecases/churn:\n" + "\n".join(found)
