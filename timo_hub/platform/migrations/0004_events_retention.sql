-- Raw events older than `floor` have been dropped by retention (usage_daily keeps their history).
-- Ingestion refuses events before the floor and rebuilds never touch days before it, so a late
-- event can neither resurrect a dropped month nor make a rebuild erase that month's history.
CREATE TABLE events_retention (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    floor     date NOT NULL
);
