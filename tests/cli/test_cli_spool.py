"""`timo-hub spool ship DIR` against the test servers and a real worker (issue 14, item 6)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from events.ingest import ingest
from events.partitions import PartitionRegistry
from events.spool import SEGMENT_SUFFIX, Spool
from tests.support.events import log_counts, make_event
from tests.support.worker import worker_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings


@pytest.mark.slow
def test_a_dead_hosts_spool_is_shipped_once_and_emptied(  # type: ignore[no-untyped-def]
    run, runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    # Guards the stranded spool: a web host that died for good left events on its disk that
    # only a process on that host would ever have adopted. A hundred of them had reached the
    # log before it died, unconfirmed: shipping them again must add nothing twice.
    stranded = tmp_path / "other-host-spool"
    account = uuid.uuid4()
    events = [make_event(account) for _ in range(250)]
    dead = Spool(stranded, segment_bytes=20_000)
    for n, event in enumerate(events):
        dead.append(event.to_json())
        if n % 50 == 49:
            dead.segments_to_ship()  # its shipper sealed full segments as it went
    dead.close()  # as at the host's death: its files stay, its locks go
    ingest(runtime.database, PartitionRegistry(), [e.to_json() for e in events[:100]])
    assert len(list(stranded.glob(f"*{SEGMENT_SUFFIX}"))) > 1

    with worker_process(settings, tmp_path / "worker.log"):
        shipped = run("spool", "ship", str(stranded), "--timeout", "60")
        assert shipped.exit_code == 0, shipped.output
        assert "adopted" in shipped.output
        again = run("spool", "ship", str(stranded), "--timeout", "10")
        assert again.exit_code == 0, again.output
        assert "adopted 0 segment(s)" in again.output
    assert sum(n for (a, _), n in log_counts(runtime).items() if a == str(account)) == 250
    assert not list(stranded.glob(f"*{SEGMENT_SUFFIX}"))
