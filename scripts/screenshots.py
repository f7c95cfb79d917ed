"""Screenshots of the customer dashboard for the docs, taken from a throwaway stack.

Starts the product as `timo-hub dev` does, under a temporary TIMO_HOME: embedded PostgreSQL and
Redis (or the servers TIMO_DATABASE_URL / TIMO_REDIS_URL / TIMO_BROKER_URL name), migrations, then
the Procfile's `web` and `worker` lines with the web process on a free 127.0.0.1 port. A demo
customer signs up through the pages and makes two keys; the account moves to the starter plan and
gets 120 days of synthetic history (`timo-hub events sample | timo-hub events import -`, then
`timo-hub quota reconcile`), a few live calls that the worker counts, and its forecast
(`timo-hub forecast run`). Then Chromium (Playwright) takes full-page screenshots of every page
at desktop (1280x800) and phone (390x844) size: docs/screenshots/<page>-desktop.png and
<page>-phone.png. The Settings page is taken just after a key is created, so its one-time
display shows (a demo key of a throwaway database).

Run: `make screenshots` (or `.venv/bin/python scripts/screenshots.py [--out DIR]`). Everything
it talks to is on 127.0.0.1; the browser's requests to anywhere else are refused and reported.
It stops every process it started and deletes its TIMO_HOME, so a developer's `.timo` is never
touched. Exits 1 if a page logged an error or asked for anything off the server's origin.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import requests  # noqa: E402
from honcho.environ import parse_procfile  # noqa: E402

from timo_hub.platform import migrate  # noqa: E402
from timo_hub.platform.embedded import release_services, resolve_services  # noqa: E402
from timo_hub.platform.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route, ViewportSize

BIN = Path(sys.executable).parent
DEMO_EMAIL = "ada@example.com"
DEMO_PASSWORD = "correct horse battery staple"
DEMO_PLAN = "starter"  # 5,000 calls a month: the history runs over it, so forecast and alerts show
# The sample gives the newest key most of the calls (`events.samples`): production it is.
HISTORY_KEYS = ("CI pipeline", "Production server")
SIZES: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
# Signed-in pages (name, path); the Settings page is taken separately, after creating a key.
PAGES = (
    ("dashboard", "/dashboard"),
    ("usage", "/dashboard/usage"),
    ("alerts", "/dashboard/alerts"),
    ("plans", "/dashboard/plans"),
)
SIGNED_OUT_PAGES = (("login", "/login"), ("signup", "/signup"))
# A key made just before each device's Settings shot (its one-time display is on the picture).
SHOWN_KEYS = {"desktop": "Staging", "phone": "Laptop"}
LIVE_CALLS = (
    "/api/v1/account",
    "/api/v1/account/quota",
    "/api/v1/usage/stats?period=30d",
    "/api/v1/usage/forecast?days=14",
    "/api/v1/auth/keys",
)
SECONDS_TO_INGEST = 60
SAMPLE = (sys.executable, "-m", "timo_hub.cli", "events", "sample")


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _chromium() -> str:
    """The browser the tests use: TIMO_TEST_CHROMIUM, else Debian's `chromium`."""
    return os.environ.get("TIMO_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Stack:
    """The settings, environment and log directory the children share."""

    settings: Settings
    env: dict[str, str]
    logs: Path
    base: str

    def cli(self, *args: str, stdin: IO[bytes] | None = None) -> str:
        """Run `timo-hub ARGS` against this stack; its output (fails loudly)."""
        done = subprocess.run(
            [sys.executable, "-m", "timo_hub.cli", *args],
            env=self.env,
            cwd=ROOT,
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"timo-hub {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout or ""


def _environment(settings: Settings, port: int) -> dict[str, str]:
    """What `timo-hub dev` gives its children: concrete servers, so they start none."""
    assert settings.database_url is not None and settings.redis_url is not None
    return {
        **os.environ,
        "TIMO_ENV": settings.env,
        "TIMO_HOME": str(settings.home),
        "TIMO_DATABASE_URL": settings.database_url,
        "TIMO_REDIS_URL": settings.redis_url,
        "TIMO_BROKER_URL": settings.effective_broker_url,
        "TIMO_KEY_PEPPER": settings.key_pepper,
        "TIMO_SECRET_KEY": settings.secret_key,
        # The demo's webhook receiver listens on 127.0.0.1.
        "TIMO_WEBHOOKS_ALLOW_PRIVATE": "true",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "WORKER_CONCURRENCY": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def _procfile_process(name: str, stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    """Run the Procfile's `name` line as honcho does (a shell), in its own process group."""
    line = parse_procfile((ROOT / "Procfile").read_text()).processes[name]
    log = (stack.logs / f"{name}.log").open("wb")
    process = subprocess.Popen(
        ["/bin/sh", "-c", f"exec {line}"],
        env=stack.env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown of the child and everything it forked; kill them if they hang."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    # Gunicorn's and Celery's children leave with their parent; anything left is killed.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _wait_until_healthy(stack: Stack, web: subprocess.Popen[bytes]) -> None:
    """Until health answers 200; exit with the web log if it dies or takes a minute."""
    deadline = time.monotonic() + 60
    while True:
        if web.poll() is not None:
            raise SystemExit("the web process exited:\n" + _tail(stack.logs / "web.log"))
        try:
            if requests.get(f"{stack.base}/api/v1/health", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(
                "the web process did not become healthy:\n" + _tail(stack.logs / "web.log")
            )
        time.sleep(0.1)


def _tail(path: Path, chars: int = 4000) -> str:
    """The end of a child's log, for an error message."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@dataclass
class Watch:
    """Console errors, page errors and refused off-origin requests, across every context."""

    origin: str
    problems: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        """Refuse any request off the origin, and note every error a page logs."""
        context.route("**/*", self._route)
        context.on(
            "console",
            lambda message: (
                self.problems.append(f"console {message.type}: {message.text}")
                if message.type == "error"
                or (message.type == "warning" and message.text.startswith("dashboard:"))
                else None
            ),
        )
        context.on("weberror", lambda error: self.problems.append(f"page error: {error.error}"))

    def _route(self, route: Route) -> None:
        """Let requests to the server through; refuse (and note) any other."""
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith("data:"):
            route.continue_()
        else:
            self.problems.append(f"refused a request off the origin: {url}")
            route.abort("blockedbyclient")


def _settle(page: Page) -> None:
    """Wait until dashboard.js has drawn every chart and the fonts are in."""
    charts = page.locator("figure.chart")
    for index in range(charts.count()):
        chart = charts.nth(index)
        chart.locator(".chart-plot canvas").wait_for(state="visible", timeout=10_000)
    page.evaluate("() => document.fonts.ready.then(() => true)")


def _shoot(page: Page, out: Path, name: str, device: str) -> Path:
    """A full-page screenshot of what `page` shows, as OUT/<name>-<device>.png."""
    _settle(page)
    path = out / f"{name}-{device}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    return path


def _submit(page: Page, fields: dict[str, str], button: str) -> None:
    """Fill a form's fields and submit it with its button; wait for the next page."""
    for selector, value in fields.items():
        page.fill(selector, value)
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()


def _create_key(page: Page, base: str, name: str) -> str:
    """Generate a key on the Settings page; the secret it shows once."""
    page.goto(f"{base}/dashboard/keys")
    _submit(page, {"#name": name}, "Generate new key")
    return page.locator("code#new-key-secret").inner_text()


def _new_context(browser: Browser, watch: Watch, device: str, timezone: str) -> BrowserContext:
    """A browser context of `device`'s size, watched."""
    phone = device == "phone"
    context = browser.new_context(
        viewport=SIZES[device],
        is_mobile=phone,
        has_touch=phone,
        locale="en-US",
        timezone_id=timezone,
    )
    watch.attach(context)
    return context


def _give_history(stack: Stack, account_id: str, days: int) -> None:
    """Starter plan, synthetic history through the import, Redis counters raised to match."""
    stack.cli("accounts", "set-plan", account_id, DEMO_PLAN)
    errors = stack.logs / "sample.log"
    with errors.open("wb") as sample_log:
        sample = subprocess.Popen(
            [*SAMPLE, "--account", account_id, "--days", str(days)],
            env=stack.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=sample_log,
        )
        assert sample.stdout is not None
        imported = stack.cli("events", "import", "-", stdin=sample.stdout)
        sample.stdout.close()
        if sample.wait() != 0:
            raise SystemExit(f"timo-hub events sample failed:\n{_tail(errors)}")
    print(f"  history: {imported.strip()}")
    print(f"  quota: {stack.cli('quota', 'reconcile').strip().splitlines()[0]}")


def _live_calls(stack: Stack, account_id: str, keys: list[str]) -> None:
    """A few calls with the keys, then wait until the worker has counted them."""
    since = datetime.now(UTC)
    made = 0
    for n, path in enumerate(LIVE_CALLS):
        secret = keys[n % len(keys)]
        answer = requests.get(
            f"{stack.base}{path}", headers={"Authorization": f"Bearer {secret}"}, timeout=30
        )
        if answer.status_code != 200:
            raise SystemExit(f"GET {path}: {answer.status_code} {answer.text[:500]}")
        made += 1
    _eventually(
        lambda: _events_since(stack, account_id, since) >= made,
        f"the worker did not count the {made} live calls",
        stack,
    )
    print(f"  live calls: {made}, counted by the worker")


def _events_since(stack: Stack, account_id: str, since: datetime) -> int:
    """The account's events in the log that happened at or after `since`."""
    with psycopg.connect(stack.settings.database_url or "") as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE account_id = %s AND occurred_at >= %s",
            (account_id, since),
        ).fetchone()
    return int(row[0]) if row else 0


def _eventually(condition: Callable[[], bool], failure: str, stack: Stack) -> None:
    """Poll `condition` until it holds; exit with the worker log if it never does."""
    deadline = time.monotonic() + SECONDS_TO_INGEST
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{failure} within {SECONDS_TO_INGEST} s:\n{_tail(stack.logs / 'worker.log')}"
            )
        time.sleep(0.2)


class _Receiver(BaseHTTPRequestHandler):
    """The demo's webhook receiver: takes every delivery."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _webhooks(stack: Stack, key: str) -> str:
    """Register two endpoints (one receiving, one whose server is down) and send each a test
    event; the path of the receiving one's delivery log."""
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    auth = {"Authorization": f"Bearer {key}"}
    made = []
    for url, events in (
        (
            f"http://127.0.0.1:{receiver.server_address[1]}/hooks/timo",
            ["quota.threshold_reached", "quota.exhausted", "quota.exhaustion_projected"],
        ),
        (f"http://127.0.0.1:{_free_port()}/hooks/keys", ["key.created", "key.revoked"]),
    ):
        answer = requests.post(
            f"{stack.base}/api/v1/webhooks",
            json={"url": url, "events": events, "description": "Billing alerts"},
            headers=auth,
            timeout=30,
        )
        answer.raise_for_status()
        made.append(answer.json()["id"])
        sent = requests.post(
            f"{stack.base}/api/v1/webhooks/{made[-1]}/test", headers=auth, timeout=30
        )
        sent.raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = requests.get(
            f"{stack.base}/api/v1/webhooks/{made[0]}/deliveries", headers=auth, timeout=30
        ).json()
        if log["deliveries"] and log["deliveries"][0]["state"] == "succeeded":
            break
        time.sleep(0.2)
    return f"/dashboard/alerts/webhooks/{made[0]}"


def _take_screenshots(
    stack: Stack, out: Path, chromium: str, days: int, timezone: str, email: str
) -> list[str]:
    """Drive the whole story in the browser; the problems pages reported (empty if none)."""
    from playwright.sync_api import sync_playwright

    watch = Watch(stack.base)
    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--disable-gpu"])
        try:
            contexts = {device: _new_context(browser, watch, device, timezone) for device in SIZES}
            desktop = contexts["desktop"].new_page()
            phone = contexts["phone"].new_page()

            # Signed out first: the sign-in and sign-up forms, empty.
            for device, page in (("desktop", desktop), ("phone", phone)):
                for name, path in SIGNED_OUT_PAGES:
                    page.goto(f"{stack.base}{path}")
                    written.append(_shoot(page, out, name, device))

            print(f"Signing up {email} and making keys in the browser")
            desktop.goto(f"{stack.base}/signup")
            _submit(desktop, {"#email": email, "#password": DEMO_PASSWORD}, "Create account")
            if not desktop.url.endswith("/dashboard/keys"):
                raise SystemExit(f"sign-up did not land on the Settings page but on {desktop.url}")
            keys = [_create_key(desktop, stack.base, name) for name in HISTORY_KEYS]
            phone.goto(f"{stack.base}/login")
            _submit(phone, {"#email": email, "#password": DEMO_PASSWORD}, "Sign in")

            answer = requests.get(
                f"{stack.base}/api/v1/account",
                headers={"Authorization": f"Bearer {keys[0]}"},
                timeout=30,
            )
            answer.raise_for_status()
            account_id = answer.json()["id"]
            print(f"Account {account_id}: {DEMO_PLAN} plan, {days} days of history")
            _give_history(stack, account_id, days)
            _live_calls(stack, account_id, keys)
            print(f"  forecast: {stack.cli('forecast', 'run', '--account', account_id).strip()}")
            log_path = _webhooks(stack, keys[0])

            for device, page in (("desktop", desktop), ("phone", phone)):
                for name, path in PAGES:
                    page.goto(f"{stack.base}{path}")
                    written.append(_shoot(page, out, name, device))
                page.goto(f"{stack.base}{log_path}")
                written.append(_shoot(page, out, "webhook-log", device))
                _create_key(page, stack.base, SHOWN_KEYS[device])
                written.append(_shoot(page, out, "keys", device))
            for context in contexts.values():
                context.close()
        finally:
            browser.close()
    for png in written:
        print(f"  wrote {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}")
    return watch.problems


def main() -> None:
    """Start the stack, take the screenshots, stop everything; exit 1 on page problems."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--days", type=int, default=120, help="days of synthetic history")
    parser.add_argument("--chromium", default=_chromium(), help="the Chromium binary")
    parser.add_argument(
        "--timezone", default="Europe/Berlin", help="the browser's zone (local times are shown)"
    )
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        raise SystemExit(f"no Chromium at {args.chromium} (install Debian's chromium)")
    args.out.mkdir(parents=True, exist_ok=True)

    home = Path(tempfile.mkdtemp(prefix="timo-screenshots-"))
    problems: list[str] = []
    try:
        configured = Settings.from_env(home=home)
        # A database of its own is empty; one the developer named may have had this run before.
        email = DEMO_EMAIL
        if configured.database_url is not None:
            email = f"ada+{secrets.token_hex(4)}@example.com"
        settings = resolve_services(configured)
        assert settings.database_url is not None
        migrate.migrate(settings.database_url)
        port = _free_port()
        logs = home / "logs"
        logs.mkdir()
        stack = Stack(settings, _environment(settings, port), logs, f"http://127.0.0.1:{port}")
        with ExitStack() as processes:
            web = processes.enter_context(_procfile_process("web", stack))
            processes.enter_context(_procfile_process("worker", stack))
            _wait_until_healthy(stack, web)
            print(f"Web on {stack.base}, worker running (TIMO_HOME {home})")
            problems = _take_screenshots(
                stack, args.out, args.chromium, args.days, args.timezone, email
            )
    finally:
        release_services(home)
        shutil.rmtree(home, ignore_errors=True)
    if problems:
        print("Problems the pages reported:", *problems, sep="\n  ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
