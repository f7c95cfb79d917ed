"""The dashboard with its stores down: a page a person can act on (503), never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from api import close_app, create_app
from tests.support import dashboard as ui
from timo_hub.platform.embedded import EmbeddedRedis
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.embedded]


def test_pages_answer_503_while_redis_is_down_and_resume_after(
    tmp_path: Path, settings: Settings, runtime: Runtime
) -> None:
    """The defect: the session opens before any view or error handler, so Redis down made every
    page a 500 (and a signed-in page's error page failed again looking up its viewer)."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.acquire()
    own = settings.model_copy(update={"redis_url": url, "broker_url": None, "home": tmp_path})
    app = create_app({"SETTINGS": own, "TESTING": True})
    client = app.test_client()
    try:
        ui.sign_up(client)
        assert client.get("/dashboard/keys").status_code == 200
        server.stop()
        for path in ("/dashboard/keys", "/login", "/dashboard"):
            down = client.get(path)
            assert down.status_code == 503, path
            assert down.headers["Retry-After"] == "1"
            assert "Temporarily unavailable" in down.get_data(as_text=True)
        # The API is unaffected by the dashboard's sessions (its own health answers).
        assert client.get("/api/v1/health").status_code in (200, 503)
        server.acquire()
        assert client.get("/dashboard/keys").status_code == 200  # the session survived
    finally:
        close_app(app)
        server.release()
