"""Credit score's own config section: the credit-score label."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flywheel.usecases.spec import LabelSettings


class CreditLabels(LabelSettings):
    """A record's label is its credit score, known with the record: no horizon, and each label has its
    record's own time (no grid)."""

    horizon_days: int = Field(0, ge=0, description="Days after a record before its score is known.")
    cadence_days: Literal[None] = None

    @property
    def label_column(self) -> str:
        return "label_credit_score"
