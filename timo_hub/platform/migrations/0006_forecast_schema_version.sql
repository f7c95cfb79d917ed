-- Stored forecasts say which version of the body's shape they hold. A deploy that changes the
-- shape bumps the version in code (`timo_hub.usage.forecast_body.SCHEMA_VERSION`); rows of an
-- older version are then recomputed instead of served. Bodies stored before this column existed
-- have the first version's shape, and so do those a process of the previous release writes while
-- a deploy rolls out: the default stays.
ALTER TABLE forecasts ADD COLUMN schema_version smallint NOT NULL DEFAULT 1;
