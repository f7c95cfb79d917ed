"""The local spool: durable appends, shipping offsets, adoption of a dead process's segments."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from events import pipeline_metrics
from events.spool import SEGMENT_SUFFIX, Spool


def test_lines_are_read_back_in_order_and_offsets_persist(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(f'{{"n": {i}}}')
    (segment,) = spool.segments_to_ship()
    lines, consumed = segment.read_lines(3, 1 << 20)
    assert lines == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    segment.mark_shipped(consumed)
    rest, _ = segment.read_lines(10, 1 << 20)
    assert rest == ['{"n": 3}', '{"n": 4}']
    assert not segment.offset_path.exists()  # shipped is not verified: nothing persisted yet
    segment.mark_verified(consumed)
    assert segment.offset_path.read_text() == str(consumed)
    spool.close()


def test_full_segments_rotate_and_are_deleted_once_shipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=64)
    for i in range(10):
        spool.append(f'{{"line": {i:04d}}}')
    (first,) = spool.segments_to_ship()  # over 64 bytes: sealed now
    assert first.sealed
    spool.append('{"line": "next"}')
    segments = spool.segments_to_ship()
    assert [s.sealed for s in segments] == [True, False]
    _, consumed = first.read_lines(100, 1 << 20)
    first.mark_shipped(consumed)
    first.mark_verified(consumed)
    spool.retire(first)
    assert not first.path.exists()
    spool.close()


KILLED_WRITER = """
    import os, signal, sys
    from pathlib import Path
    from events.spool import Spool
    spool = Spool(Path(sys.argv[1]))
    for i in range(100):
        spool.append('{"n": %d}' % i)
    segment = spool.segments_to_ship()[0]
    # Killed in the middle of copying a line, with its last bytes (a copy may store those
    # first) and some of its first ones in place, and a hole of zeros between.
    start = segment.written
    segment._map[start : start + 9] = b'{"half": '
    segment._map[start + 30 : start + 32] = b'}\\n'
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_processs_segment_is_adopted_without_its_torn_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(tmp_path)],
        capture_output=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == -signal.SIGKILL
    spool = Spool(tmp_path)
    assert spool.adopt_orphans() == 1
    (orphan,) = spool.segments_to_ship()
    lines, consumed = orphan.read_lines(1000, 1 << 20)
    assert lines == [f'{{"n": {i}}}' for i in range(100)]
    # Cut to its complete lines (neither the torn one nor the unwritten tail is left to ship),
    # so once they are verified the segment is retired.
    assert orphan.size() == consumed == sum(len(line) + 1 for line in lines)
    assert spool.adopt_orphans() == 0  # already ours
    spool.close()


def test_an_unterminated_last_line_is_cut_counted_and_the_segment_can_retire(
    tmp_path: Path,
) -> None:
    # Guards the defect where a dead writer's unterminated last line (torn by a crash mid-write,
    # no zeros after it) was never shipped, being incomplete, so the adopted segment's verified
    # offset never reached its size: never retired, and adopted again on every restart.
    orphan_path = tmp_path / f"1-999999-dead{SEGMENT_SUFFIX}"
    orphan_path.write_bytes(b'{"n": 0}\n{"n": 1}\n{"n": 2')
    torn_before = pipeline_metrics.SPOOL_TORN_LINES._value.get()
    spool = Spool(tmp_path)
    assert spool.adopt_orphans() == 1
    (orphan,) = spool.segments_to_ship()
    lines, consumed = orphan.read_lines(1000, 1 << 20)
    assert lines == ['{"n": 0}', '{"n": 1}']
    assert orphan.size() == consumed  # everything left can be shipped, then verified
    assert pipeline_metrics.SPOOL_TORN_LINES._value.get() - torn_before == 1
    orphan.mark_shipped(consumed)
    orphan.mark_verified(consumed)
    spool.retire(orphan)
    assert not orphan_path.exists()
    assert spool.adopt_orphans() == 0
    spool.close()


def test_a_segment_is_reserved_ahead_written_in_place_and_cut_when_sealed(
    tmp_path: Path,
) -> None:
    # Lines are copied into a mapped file whose blocks were reserved when it was made (a full
    # disk fails there, not on a copy); what is copied is in the file at once; a sealed segment
    # is cut to its lines.
    spool = Spool(tmp_path, segment_bytes=100)
    spool.append('{"n": 0}')
    (segment,) = spool.segments_to_ship()
    assert os.fstat(segment.fd).st_size > segment.size() == 9  # reserved ahead, 9 bytes used
    assert segment.path.read_bytes()[:9] == b'{"n": 0}\n'  # in the page cache: durable on kill
    for i in range(1, 20):
        spool.append(f'{{"n": {i}}}')
    (sealed, *_) = spool.segments_to_ship()
    assert sealed.sealed and os.fstat(sealed.fd).st_size == sealed.size() >= 100
    lines, _ = sealed.read_lines(100, 1 << 20)
    assert lines == [f'{{"n": {i}}}' for i in range(len(lines))]
    spool.close()


def test_a_live_writers_segment_is_not_adopted(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.append('{"n": 1}')
    # Another process (simulated by a second spool in a child) must not take it while we live.
    code = (
        "import sys; from pathlib import Path; from events.spool import Spool; "
        "print(Spool(Path(sys.argv[1])).adopt_orphans())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "0"
    writer.close()


def test_a_backlog_at_its_limit_refuses_new_calls_not_the_ones_counted(tmp_path: Path) -> None:
    # Guards the descriptor leak (item 4): each sealed segment keeps its descriptors until its
    # events are confirmed, so during a long broker outage they grew until opening a segment
    # failed, with every call by then already counted. Now the spool says no before counting,
    # while the segment being written keeps room for the calls already in flight.
    spool = Spool(tmp_path, segment_bytes=200, max_pending=2)
    line = '{"n": 0, "padding": "' + "x" * 180 + '"}'
    sealed = 0
    while sealed < 2:
        spool.ensure_room(room=256)
        spool.append(line)
        sealed = sum(1 for s in spool.segments_to_ship() if s.sealed)
    oldest = spool.segments_to_ship()[0]
    with pytest.raises(OSError) as refused:  # two segments wait for the broker: no new call
        spool.ensure_room(room=256)
    assert refused.value.errno == errno.EMFILE
    spool.append(line)  # a call counted before the refusal still gets its event
    more = 2 * 1024 * 1024  # more than the segment being written has left: it must rotate
    with pytest.raises(OSError):
        spool.ensure_room(room=more)
    oldest.mark_shipped(oldest.size())
    oldest.mark_verified(oldest.size())
    spool.retire(oldest)
    spool.ensure_room(room=more)  # room again once the backlog shrinks
    spool.close()
