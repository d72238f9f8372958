"""Churn's own config sections: the synthetic theLook generator and the churn label."""

from __future__ import annotations

from datetime import date

from pydantic import Field, model_validator

from flywheel.usecases.spec import LabelSettings, Settings


class GeneratorSettings(Settings):
    """Parameters of ``flywheel data generate`` (the first batch of synthetic theLook data)."""

    customers: int = Field(20_000, ge=1, description="Users signing up over the period.")
    start: date = Field(date(2022, 1, 1), description="First day of the generated period.")
    end: date = Field(date(2025, 1, 1), description="Exclusive end of the generated period.")
    seed: int = Field(42, description="Seed; equal seeds and parameters give identical tables.")
    products: int = Field(2_000, ge=10, description="Size of the product catalogue.")

    @model_validator(mode="after")
    def _period_is_ordered(self) -> GeneratorSettings:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class ChurnLabels(LabelSettings):
    """Churn labels: who is scored at each label date, and what counts as churn."""

    horizon_days: int = Field(60, ge=1, description="Churn = no non-cancelled order within this many days.")
    cadence_days: int = Field(14, ge=1, description="Days between label dates (k × snapshot cadence).")
    active_days: int = Field(365, ge=1, description="Population: an order within this many days before t.")

    @property
    def label_column(self) -> str:
        return f"label_churn_{self.horizon_days}d"
