"""Versioned plain-SQL migrations.

Migrations are the files `timo_hub/platform/migrations/NNNN_name.sql`, applied in version order.
Each runs in its own transaction together with the row that records it in `schema_migrations`, so
a failed migration leaves no trace and the next run retries it. A session-level advisory lock
serialises concurrent runners (two `release` processes, a test and a CLI): the second one waits,
then finds nothing left to do. A migration that was edited after it was applied is refused by
checksum.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

# Any constant works as long as nothing else in the database uses it; this one spells "timo".
ADVISORY_LOCK_KEY = 0x74696D6F

_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, checksum FROM schema_migrations"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree."""


@dataclass(frozen=True)
class Migration:
    """One SQL file of the migrations package."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, to notice an applied migration that was edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover() -> list[Migration]:
    """All migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("timo_hub.platform.migrations").iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(Migration(int(match["version"]), match["name"], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"two migrations share a version: {versions}")
    return found


def migrate(url: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration to the database at `url`; return the ones applied."""
    migrations = discover() if migrations is None else migrations
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            return _apply_pending(conn, migrations)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def pending(url: str) -> list[Migration]:
    """Migrations not yet applied to the database at `url`."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CREATE_TABLE)
        applied: dict[int, str] = dict(conn.execute(SELECT_APPLIED).fetchall())
    return [m for m in discover() if m.version not in applied]


def _apply_pending(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    conn.execute(CREATE_TABLE)
    applied: dict[int, str] = dict(conn.execute(SELECT_APPLIED).fetchall())
    done = []
    for migration in migrations:
        checksum = applied.get(migration.version)
        if checksum is not None:
            if checksum != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it "
                    "was applied; add a new migration instead of editing an old one"
                )
            continue
        with conn.transaction():
            conn.execute(migration.sql.encode())
            conn.execute(INSERT_APPLIED, (migration.version, migration.name, migration.checksum))
        done.append(migration)
    return done
