"""Reading what one logger writes, for tests."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from timo_hub.platform import logs


@contextmanager
def captured(logger_name: str, log_format: str = "plain") -> Iterator[io.StringIO]:
    """The lines `logger_name` writes at INFO and above while the block runs."""
    stream = io.StringIO()
    handler = logs.build_handler(log_format, stream)
    target = logging.getLogger(logger_name)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
