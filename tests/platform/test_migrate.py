"""Migrations: seeded plans, idempotence, concurrency, atomicity, edited-file refusal."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from tests.support.services import ServiceUrls, scratch_database
from timo_hub.platform import migrate
from timo_hub.platform.migrate import Migration, MigrationError


@pytest.fixture
def blank_database(service_urls: ServiceUrls) -> Iterator[str]:
    with scratch_database(service_urls.postgres_admin_url) as url:
        yield url


def _applied(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_first_migration_seeds_the_five_plans(blank_database: str) -> None:
    applied = migrate.migrate(blank_database)
    assert [m.version for m in applied] == [m.version for m in migrate.discover()]
    with psycopg.connect(blank_database) as conn:
        plans = conn.execute(
            "SELECT name, monthly_limit, price_usd FROM plans ORDER BY sort_order"
        ).fetchall()
    assert plans == [
        ("free", 1000, Decimal("0.00")),
        ("starter", 5000, Decimal("29.00")),
        ("developer", 50000, Decimal("99.00")),
        ("business", 250000, Decimal("299.00")),
        ("enterprise", None, None),
    ]


def test_running_twice_applies_nothing_the_second_time(blank_database: str) -> None:
    migrate.migrate(blank_database)
    assert migrate.migrate(blank_database) == []
    assert migrate.pending(blank_database) == []
    assert _applied(blank_database) == [m.version for m in migrate.discover()]


def _migrate_in_child(url: str, start: multiprocessing.synchronize.Event) -> int:
    start.wait()
    return len(migrate.migrate(url))


def test_concurrent_runs_apply_each_migration_once(blank_database: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(4) as pool:
            results = [
                pool.apply_async(_migrate_in_child, (blank_database, start)) for _ in range(4)
            ]
            start.set()
            counts = [r.get(timeout=120) for r in results]
    assert sorted(counts) == [0, 0, 0, len(migrate.discover())]
    assert _applied(blank_database) == [m.version for m in migrate.discover()]


def test_a_failing_migration_leaves_no_trace(blank_database: str) -> None:
    broken = [
        Migration(1, "good", "CREATE TABLE good_one (id int)"),
        Migration(2, "bad", "CREATE TABLE half_done (id int); SELECT no_such_function()"),
    ]
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate.migrate(blank_database, broken)
    assert _applied(blank_database) == [1]
    with psycopg.connect(blank_database) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert conn.execute("SELECT to_regclass('good_one')").fetchone() == ("good_one",)


def test_an_edited_applied_migration_is_refused(blank_database: str) -> None:
    migrate.migrate(blank_database, [Migration(1, "one", "CREATE TABLE one (id int)")])
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate.migrate(blank_database, [Migration(1, "one", "CREATE TABLE one (id bigint)")])
