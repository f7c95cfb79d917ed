"""Real PostgreSQL and Redis servers started from Python wheels when no URL is configured.

`resolve_services(settings)` is what every entry point calls: it returns settings that name
concrete servers, starting (or joining) the embedded ones under `TIMO_HOME` for whatever URL is
unset. Servers started here stop when the last process holding them exits.
"""

from __future__ import annotations

from pathlib import Path

from timo_hub.platform.embedded.postgres import start_postgres, stop_postgres
from timo_hub.platform.embedded.redis import EmbeddedRedis
from timo_hub.platform.settings import Settings

_redis_servers: dict[Path, EmbeddedRedis] = {}


def resolve_services(settings: Settings) -> Settings:
    """Return `settings` with database and Redis URLs, starting embedded servers where unset."""
    if not settings.uses_embedded_services:
        return settings
    settings.home.mkdir(parents=True, exist_ok=True)
    database_url = settings.database_url or start_postgres(settings.home / "postgres")
    redis_url = settings.redis_url
    if redis_url is None:
        server = _redis_servers.setdefault(settings.home, EmbeddedRedis(settings.home / "redis"))
        redis_url = server.acquire()
    return settings.with_services(database_url=database_url, redis_url=redis_url)


def release_services(home: Path) -> None:
    """Let go of the embedded servers under `home` now rather than at exit (the last holder
    stops them); for tools that delete `home` afterwards."""
    server = _redis_servers.pop(home.expanduser().resolve(), None)
    if server is not None:
        server.release()
    if (home / "postgres").exists():
        stop_postgres(home / "postgres")


__all__ = ["EmbeddedRedis", "release_services", "resolve_services", "start_postgres"]
