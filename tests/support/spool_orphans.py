"""Spool segments that web processes left behind when they died, put where live ones adopt them.

A live web process adopts every segment in its spool directory that no process holds a lock on
(`events.spool.Spool.adopt_orphans`), ships its complete lines and deletes it. These helpers make
such segments the two ways they arise: a process killed while copying a line (the product's own
spool, a real SIGKILL), and a file placed whole, for contents no writer of ours produces (a line
torn without the mapped spool's zero tail, lines no reader accepts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from events.spool import SEGMENT_SUFFIX

REPOSITORY = Path(__file__).resolve().parents[2]

# Spools every line of a file but the last with the product's `Spool`, then is killed while it
# copies the last: its first bytes and its final `}` and newline (a copy may store those first)
# are in the mapped segment, with a hole of zeros between, as after a SIGKILL mid-`memcpy`.
_KILLED_WRITER = """
    import os, signal, sys
    from pathlib import Path
    from events.spool import Spool
    directory, lines_file = Path(sys.argv[1]), Path(sys.argv[2])
    *complete, torn = lines_file.read_text().splitlines()
    spool = Spool(directory, segment_bytes=32 * 1024 * 1024)
    for line in complete:
        spool.append(line)
    segment = spool._current
    data = (torn + "\\n").encode()
    start = segment.written
    head = len(data) * 2 // 5
    segment._map[start : start + head] = data[:head]
    segment._map[start + len(data) - 2 : start + len(data)] = data[-2:]
    os.kill(os.getpid(), signal.SIGKILL)
"""


def leave_killed_writers_segment(spool_dir: Path, lines: list[str], torn: str) -> Path:
    """Have a process spool `lines` into `spool_dir` and die by SIGKILL copying `torn`; return
    the segment it left."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    lines_file = spool_dir.parent / f"killed-writer-{uuid.uuid4().hex[:8]}.lines"
    lines_file.write_text("\n".join([*lines, torn]) + "\n")
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    script = textwrap.dedent(_KILLED_WRITER)
    try:
        writer = subprocess.Popen(
            [sys.executable, "-c", script, str(spool_dir), str(lines_file)],
            cwd=REPOSITORY,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, stderr = writer.communicate(timeout=120)
    finally:
        lines_file.unlink(missing_ok=True)
    assert writer.returncode == -signal.SIGKILL, stderr.decode(errors="replace")
    # Segments are named `<time>-<pid>-<random>.jsonl` after the process that writes them.
    (segment,) = spool_dir.glob(f"*-{writer.pid}-*{SEGMENT_SUFFIX}")
    return segment


def place_orphan_segment(spool_dir: Path, data: bytes) -> Path:
    """Put a segment holding `data` into `spool_dir` whole: written beside it under a name the
    spool ignores, then renamed in, so that no adopter ever sees it half written."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = spool_dir / f"{name}.staging"
    staging.write_bytes(data)
    final = spool_dir / f"{name}{SEGMENT_SUFFIX}"
    os.replace(staging, final)
    return final


def spool_files(spool_dir: Path) -> list[Path]:
    """Every file in `spool_dir` (segments, offsets, anything left half-way)."""
    if not spool_dir.exists():
        return []
    return sorted(path for path in spool_dir.iterdir() if path.is_file())
