"""A rollout's arms as the prediction logs saw them: the predictions each arm answered since the
rollout (or its stage) started, and the outcomes clients posted for them (``POST /v1/outcomes``),
joined by request id across every log in the folder — services on several hosts write one each, and
an outcome may reach another host than its prediction did.

An arm's trials are its predictions; an outcome of 1 (a conversion) is a success, 0 or none is not,
so a client may post only its conversions. A request id counts once, with its highest outcome. A
shadow challenger answered no one: its predictions are counted, its outcomes are not.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flywheel.config import RolloutConfig
from flywheel.rollout.state import CHALLENGER, CHAMPION, Rollout
from flywheel.rollout.stats import ABResult, two_proportion_test
from flywheel.serving.predlog import SHADOW

_logger = logging.getLogger(__name__)
# an outcome whose prediction no log holds yet (still queued on another host) is looked for again
# on this many later updates, then dropped (a request id no service answered)
RETRIES = 3


@dataclass
class ArmFigures:
    arm: str
    version: str
    predictions: int = 0
    outcomes: int = 0  # predictions with an outcome posted
    successes: int = 0  # outcomes of 1

    @property
    def rate(self) -> float | None:
        """Successes per prediction."""
        return self.successes / self.predictions if self.predictions else None


class ArmCounter:
    """The running figures of one rollout's arms, read incrementally: each :meth:`update` reads only
    the rows logged since the last one, so a service can recount at every poll."""

    def __init__(self, folder: Path, rollout: Rollout, since: str | None = None) -> None:
        self.folder, self.rollout, self.since = folder, rollout, since or rollout.started_at
        self.figures = {
            CHAMPION: ArmFigures(CHAMPION, rollout.champion),
            CHALLENGER: ArmFigures(CHALLENGER, rollout.challenger),
            SHADOW: ArmFigures(SHADOW, rollout.challenger),
        }
        self._predictions_read: dict[Path, int] = {}  # log → the last rowid counted
        self._outcomes_read: dict[Path, int] = {}
        self._outcome: dict[str, int] = {}  # request id → its highest outcome counted
        self._waiting: dict[str, tuple[int, int]] = {}  # request id → (outcome, updates left)
        self._left_out: set[Path] = set()  # logs not readable for arms (warned once each)

    def update(self) -> dict[str, ArmFigures]:
        """Count what the logs gained since the last update; returns every arm's figures. An outcome
        counts only once its prediction is counted (never a success without its trial)."""
        found = sorted(self.folder.glob("*.db")) if self.folder.is_dir() else []
        logs = [log for log in found if _ready(log, self._left_out)]
        posted = dict(self._waiting)
        for log in logs:
            with _reading(log) as con:
                self._count_predictions(log, con)
                for request_id, outcome, left in self._new_outcomes(log, con):
                    if outcome >= posted.get(request_id, (-1, 0))[0]:
                        posted[request_id] = (outcome, left)
        if posted:
            self._join(logs, posted)
        return self.figures

    def _count_predictions(self, log: Path, con: sqlite3.Connection) -> None:
        last = self._predictions_read.get(log, 0)
        [(newest,)] = con.execute("SELECT MAX(rowid) FROM predictions")
        if newest is None or newest <= last:
            return
        rows = con.execute(
            "SELECT arm, COUNT(*) FROM predictions WHERE rowid > ? AND rowid <= ? AND predicted_at >= ? "
            "AND ((arm = ? AND model_version = ?) OR (arm IN (?, ?) AND model_version = ?)) GROUP BY arm",
            (
                last,
                newest,
                self.since,
                CHAMPION,
                self.rollout.champion,
                CHALLENGER,
                SHADOW,
                self.rollout.challenger,
            ),
        )
        for arm, count in rows:
            self.figures[arm].predictions += count
        self._predictions_read[log] = newest

    def _new_outcomes(self, log: Path, con: sqlite3.Connection) -> Iterator[tuple[str, int, int]]:
        last = self._outcomes_read.get(log, 0)
        [(newest,)] = con.execute("SELECT MAX(rowid) FROM outcomes")
        if newest is None or newest <= last:
            return
        self._outcomes_read[log] = newest  # rows before the rollout are never read twice either
        rows = con.execute(
            "SELECT request_id, outcome FROM outcomes WHERE rowid > ? AND rowid <= ? AND received_at >= ?",
            (last, newest, self.since),
        )
        for request_id, outcome in rows:
            yield request_id, int(outcome == 1), RETRIES

    def _join(self, logs: list[Path], posted: dict[str, tuple[int, int]]) -> None:
        """Each posted outcome's arm, from whichever log holds its (counted) prediction."""
        found: dict[str, str] = {}
        for log in logs:
            counted = self._predictions_read.get(log, 0)
            if not counted:
                continue
            with _reading(log) as con:
                con.execute("CREATE TEMP TABLE posted (request_id TEXT PRIMARY KEY)")
                con.executemany("INSERT INTO temp.posted VALUES (?)", ((r,) for r in posted))
                rows = con.execute(  # CROSS JOIN: the posted ids drive, through the request_id index
                    "SELECT p.request_id, p.arm FROM temp.posted o CROSS JOIN predictions p "
                    "ON p.request_id = o.request_id WHERE p.rowid <= ? AND p.predicted_at >= ? "
                    "AND ((p.arm = ? AND p.model_version = ?) OR (p.arm = ? AND p.model_version = ?))",
                    (
                        counted,
                        self.since,
                        CHAMPION,
                        self.rollout.champion,
                        CHALLENGER,
                        self.rollout.challenger,
                    ),
                )
                found.update(rows)
        self._waiting = {}
        for request_id, (outcome, left) in posted.items():
            arm = found.get(request_id)
            if arm is None:
                if left > 1:
                    self._waiting[request_id] = (outcome, left - 1)
                continue
            before = self._outcome.get(request_id)
            figures = self.figures[arm]
            if before is None:
                figures.outcomes += 1
                figures.successes += outcome
            elif outcome > before:
                figures.successes += 1
            if before is None or outcome > before:
                self._outcome[request_id] = outcome


def _ready(log: Path, left_out: set[Path]) -> bool:
    """Whether the log has what the arms are read from: a log being created by another worker, or
    one of an earlier release no writer has opened since, is left out (warned once)."""
    problem = None
    try:
        with _reading(log) as con:
            tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = {row[1] for row in con.execute("PRAGMA table_info(predictions)")}
        if not ({"predictions", "outcomes"} <= tables and "arm" in columns):
            problem = "written before rollouts (no arm or outcomes yet)"
    except sqlite3.Error as error:
        problem = str(error)
    if problem is None:
        left_out.discard(log)
        return True
    if log not in left_out:
        _logger.warning("rollout arms: %s left out: %s", log, problem)
        left_out.add(log)
    return False


@contextlib.contextmanager
def _reading(log: Path) -> Iterator[sqlite3.Connection]:
    """A connection to one log that only reads it (its temporary tables live in memory)."""
    with contextlib.closing(sqlite3.connect(log, timeout=30)) as con:
        con.execute("PRAGMA temp_store=MEMORY")
        yield con


def compare(figures: dict[str, ArmFigures], settings: RolloutConfig) -> ABResult | None:
    """The A/B verdict of the challenger against the champion on their outcome rates; None until
    both arms answered."""
    champion, challenger = figures[CHAMPION], figures[CHALLENGER]
    if not champion.predictions or not challenger.predictions:
        return None
    effect = settings.min_effect if champion.rate + settings.min_effect <= 1 else None  # else no size
    return two_proportion_test(
        champion.successes,
        champion.predictions,
        challenger.successes,
        challenger.predictions,
        alpha=settings.alpha,
        power=settings.power,
        min_detectable_effect=effect,
    )


def bandit_outcomes(figures: dict[str, ArmFigures]) -> dict[str, tuple[int, int]]:
    """The bandit's evidence per arm: (successes, failures)."""
    return {
        arm: (f.successes, f.predictions - f.successes)
        for arm, f in figures.items()
        if arm in (CHAMPION, CHALLENGER)
    }
