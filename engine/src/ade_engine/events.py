"""Structured event sink: one JSON object per line on the fd named by ADE_EVENTS_FD."""

import json
import os
import sys
from typing import Any, TextIO

from .errors import EngineError

EVENTS_FD_ENV = "ADE_EVENTS_FD"


class EventSink:
    """Writes `{"type", "payload"}` lines to a stream, or drops them when there is none."""

    def __init__(self, stream: TextIO | None):
        self._stream = stream

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        """Write one event and flush it; on a broken stream, warn once and stop writing."""
        if self._stream is None:
            return
        line = json.dumps({"type": event_type, "payload": payload}, ensure_ascii=False)
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError) as exc:
            print(f"warning: cannot write events any more: {exc}", file=sys.stderr)
            self._stream = None

    def close(self) -> None:
        """Close the underlying stream, if any."""
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass
            self._stream = None


def open_sink(environ: dict[str, str] | None = None) -> EventSink:
    """Open the sink named by ADE_EVENTS_FD; without it, return a sink that drops events."""
    value = (os.environ if environ is None else environ).get(EVENTS_FD_ENV)
    if value is None or value.strip() == "":
        return EventSink(None)
    try:
        fd = int(value)
        stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8", closefd=True)
    except (ValueError, OSError) as exc:
        raise EngineError(f"{EVENTS_FD_ENV}={value!r} is not a writable file descriptor: {exc}")
    return EventSink(stream)
