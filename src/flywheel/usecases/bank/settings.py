"""Bank marketing's own config section: the subscription label."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flywheel.usecases.spec import LabelSettings


class BankLabels(LabelSettings):
    """A contact's label is its campaign outcome (``y``), recorded when the call ends: no horizon, and
    each label has its contact's own time (no grid)."""

    horizon_days: int = Field(0, ge=0, description="Days after a contact before its outcome is known.")
    cadence_days: Literal[None] = None

    @property
    def label_column(self) -> str:
        return "label_subscribed"
