-- What a stored forecast was computed from, so that it is never served once that has changed.

-- SHA-256 of the counted calls per full UTC day it read (`day=calls`, ascending, comma-joined;
-- `timo_hub.usage.forecast_store.history_digest`). It is served only while the same digest of
-- `usage_daily` now matches: an import, a late event or a backfill for a past day changes it.
-- NULL for rows stored before this column existed, or by a process of the previous release
-- while a deploy rolls out: those never match, and are recomputed once.
ALTER TABLE forecasts ADD COLUMN history_digest bytea;

-- The counted calls of `generated_on` itself that it knew of (they are in the body's month
-- `used` too): the intraday refresh (`timo_hub.usage.projection_refresh`) takes the calls made
-- since then from today's `usage_daily` rows alone, rather than summing the month's.
ALTER TABLE forecasts ADD COLUMN used_today bigint CHECK (used_today >= 0);
