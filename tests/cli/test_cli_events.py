"""`timo-hub events import` and `timo-hub projections rebuild`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.accounts import new_customer
from tests.support.events import log_counts, make_event, projection_counts, usage_rows
from timo_hub.platform.runtime import Runtime


def test_import_is_idempotent_and_reports_rejections(run, runtime: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    customer = new_customer(runtime)
    good = [make_event(customer.account.id) for _ in range(50)]
    stranger = make_event()  # an account that does not exist
    broken = json.loads(good[0].to_json()) | {"status": 42}
    lines = [e.to_json() for e in good] + [stranger.to_json(), json.dumps(broken), "{oops", ""]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")

    first = run("events", "import", str(path))
    assert first.exit_code == 0, first.output
    assert "read 53, appended 50, duplicates 0, rejected 3" in first.output
    assert "unknown account" in first.output
    assert "line 52: status" in first.output
    snapshot = (log_counts(runtime), usage_rows(runtime))

    second = run("events", "import", str(path))
    assert "read 53, appended 0, duplicates 50, rejected 3" in second.output
    assert (log_counts(runtime), usage_rows(runtime)) == snapshot
    with runtime.database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def test_import_reads_stdin(run, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    customer = new_customer(runtime)
    text = "\n".join(make_event(customer.account.id).to_json() for _ in range(3))
    result = run("events", "import", "-", input=text)
    assert result.exit_code == 0, result.output
    assert "appended 3" in result.output


def test_rebuild_matches_live(run, runtime: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    customer = new_customer(runtime)
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(make_event(customer.account.id).to_json() for _ in range(20)))
    run("events", "import", str(path))
    live = usage_rows(runtime)
    with runtime.database.connection() as conn:
        conn.execute("TRUNCATE usage_daily")
    result = run("projections", "rebuild")
    assert result.exit_code == 0, result.output
    assert "rebuilt 1 day(s)" in result.output
    assert usage_rows(runtime) == live
    assert projection_counts(runtime) == log_counts(runtime)
