"""Structured events: one `{"type", "payload"}` JSON line per event on the fd in ADE_EVENTS_FD.

The encoder is a few lines over the C string escaper of `_json`: the `json`
package imports `re`, which costs more start-up time than a whole small run.
"""

import os
import sys
from _json import encode_basestring as _quote

EVENTS_FD_ENV = "ADE_EVENTS_FD"

# Built before any run, so that reporting an exhausted memory allocates next to nothing.
MEMORY_ERROR_EVENT = (
    b'{"type":"run.error","payload":{"code":"memory_limit","message":'
    b'"the run ran out of memory (its address-space limit)"}}\n'
)
MEMORY_ERROR_LINE = b"error: the run ran out of memory (its address-space limit)\n"


def encode(value) -> str:
    """JSON text of dicts, lists, strings, numbers, booleans and None (others as strings)."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is dict:
        return "{" + ",".join(_quote(str(k)) + ":" + encode(v) for k, v in value.items()) + "}"
    if kind is list or kind is tuple:
        return "[" + ",".join(encode(v) for v in value) + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else "null"
    return _quote(str(value))


class EventSink:
    """Writes event lines to a file descriptor, or drops them when there is none."""

    def __init__(self, fd: int | None):
        self.fd = fd
        self.count = 0

    def emit(self, event_type: str, payload: dict) -> None:
        """Write one event; on a broken pipe, warn once and stop writing."""
        if self.fd is None:
            return
        line = '{"type":' + _quote(event_type) + ',"payload":' + encode(payload) + "}\n"
        self.write(line.encode("utf-8", "replace"))
        self.count += 1

    def write(self, data: bytes) -> None:
        """Write raw bytes fully (pipes may take a large event in parts)."""
        if self.fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as exc:
            print(f"warning: cannot write events any more: {exc.strerror or exc}", file=sys.stderr)
            self.fd = None

    def close(self) -> None:
        """Close the descriptor, if any."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def open_sink(environ=None) -> EventSink:
    """The sink named by ADE_EVENTS_FD; without it, a sink that drops events."""
    from .errors import UsageError

    value = (os.environ if environ is None else environ).get(EVENTS_FD_ENV, "").strip()
    if not value:
        return EventSink(None)
    try:
        fd = int(value)
        os.fstat(fd)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{EVENTS_FD_ENV}={value!r} is not an open file descriptor ({exc})")
    return EventSink(fd)
