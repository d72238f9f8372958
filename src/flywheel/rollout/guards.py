"""The automatic guards of a rollout: what one service replica saw of the challenger since the
rollout started — its scorings that failed, its scoring latency, its scores against the champion's —
judged against ``rollout.guards``; a crossed limit aborts the rollout with the reason.

Each replica judges its own traffic (no replica waits for another), once the challenger has scored
``min_predictions`` rows there. The latency is the arm's model call per request (the part that
differs between arms; the feature read and the response are the same for both). Prediction drift is
the PSI of the challenger's scores on the bins of the champion's; in a canary both arms score random slices
of the same entities, in shadow the very same rows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from flywheel.config import GuardsConfig
from flywheel.features.profile import numeric_profile
from flywheel.monitoring.stattests import psi
from flywheel.rollout.state import CHALLENGER, CHAMPION
from flywheel.serving.predlog import SHADOW

KEPT = 10_000  # the newest latencies and scores kept per arm


@dataclass
class Arm:
    calls: deque = field(default_factory=lambda: deque(maxlen=KEPT))  # (rows, rows failed) per call
    seconds: deque = field(default_factory=lambda: deque(maxlen=KEPT))  # per model call that answered
    scores: deque = field(default_factory=lambda: deque(maxlen=KEPT))

    def tried(self) -> tuple[int, int]:
        """Rows scored and rows failed over the newest calls."""
        return sum(rows for rows, _ in self.calls), sum(failed for _, failed in self.calls)


class Watch:
    """One stage of a rollout (its id and mode: a shift starts a new watch) as this replica served it."""

    def __init__(self, stage: tuple[str, str]) -> None:
        self.stage = stage
        self.arms = {CHAMPION: Arm(), CHALLENGER: Arm(), SHADOW: Arm()}

    def scored(self, arm: str, seconds: float, scores: list[float]) -> None:
        """``arm``'s model scored ``scores`` in one call of ``seconds``."""
        watched = self.arms[arm]
        watched.calls.append((len(scores), 0))
        watched.seconds.append(seconds)
        watched.scores.extend(scores)

    def failed(self, arm: str, rows: int) -> None:
        """``arm``'s model raised scoring ``rows`` rows."""
        self.arms[arm].calls.append((rows, rows))

    def challenger(self) -> Arm:
        """The challenger's arm in this stage: the shadow in shadow mode, else the one answering."""
        return self.arms[SHADOW if self.stage[1] == "shadow" else CHALLENGER]

    def verdict(self, limits: GuardsConfig) -> str | None:
        """Why the rollout must be aborted, or None while every guard holds (or too little was seen).
        The error rate and the latency are the newest :data:`KEPT` calls'; the drift needs
        ``min_drift_scores`` of each arm (PSI over 20 bins is noisy below about a thousand)."""
        trial, champion = self.challenger(), self.arms[CHAMPION]
        tried, failed = trial.tried()
        if tried < limits.min_predictions:
            return None
        if failed / tried > limits.max_error_rate:
            return (
                f"error rate {failed / tried:.1%} of the challenger's {tried:,} newest scorings "
                f"over the limit {limits.max_error_rate:.1%}"
            )
        if len(trial.seconds) >= limits.min_predictions:
            p99 = float(np.percentile(np.fromiter(trial.seconds, float), 99)) * 1000
            if p99 > limits.max_p99_ms:
                return f"challenger p99 scoring latency {p99:.1f} ms over the limit {limits.max_p99_ms:g} ms"
        enough = max(limits.min_predictions, limits.min_drift_scores)
        if len(trial.scores) >= enough and len(champion.scores) >= enough:
            drift = prediction_psi(np.fromiter(champion.scores, float), np.fromiter(trial.scores, float))
            if drift > limits.max_prediction_psi:
                return (
                    f"prediction drift: PSI {drift:.3f} of the challenger's scores against the champion's "
                    f"over the limit {limits.max_prediction_psi:g}"
                )
        return None


def prediction_psi(champion: np.ndarray, challenger: np.ndarray) -> float:
    """PSI of the challenger's scores on the bins of the champion's profile, as drift monitoring
    bins a column."""
    return psi(numeric_profile(champion), challenger)
