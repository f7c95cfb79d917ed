"""What a caller may ask of analytics: periods, horizons and models, and their defaults.

Kept apart from the models so that the API can validate a request without importing pandas or
statsmodels (seconds of CPU in every web worker's boot).
"""

from __future__ import annotations

from typing import Literal

PeriodChoice = Literal["7d", "30d", "90d"]
PERIODS: dict[PeriodChoice, int] = {"7d": 7, "30d": 30, "90d": 90}
DEFAULT_PERIOD: PeriodChoice = "30d"

ModelChoice = Literal["auto", "linear", "seasonal"]
MODEL_CHOICES: tuple[ModelChoice, ...] = ("auto", "linear", "seasonal")
DEFAULT_MODEL: ModelChoice = "auto"
MIN_HORIZON_DAYS, MAX_HORIZON_DAYS = 7, 90
DEFAULT_HORIZON_DAYS = 30
