"""Request ids: a sane caller's id is echoed; otherwise a new one, unique across workers."""

from __future__ import annotations

import os

from api.request_ids import accept_or_make


def test_a_sane_id_is_echoed_and_anything_else_replaced() -> None:
    assert accept_or_make("req-1.2:3") == "req-1.2:3"
    # "req-1\n": a trailing newline passed a `^...$` match; the gate now appends the id to the
    # server's header list unchecked, so it must never hold a line break.
    for bad in (None, "", "a b", "x" * 129, "evil\r\nSet-Cookie: a=b", "req-1\n"):
        made = accept_or_make(bad)
        assert made != bad and len(made) == 32 and int(made, 16) >= 0


def test_forked_workers_make_different_ids() -> None:
    # Ids come from the process's generator, not a system call per request: a gunicorn worker
    # forked from the master must not repeat its siblings' ids (each is reseeded at fork).
    made = []
    for _ in range(2):
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(writer, "".join(accept_or_make(None) for _ in range(3)).encode())
            os._exit(0)
        os.close(writer)
        os.waitpid(pid, 0)
        made.append(os.read(reader, 1024).decode())
        os.close(reader)
    assert len(made[0]) == len(made[1]) == 96 and made[0] != made[1]
