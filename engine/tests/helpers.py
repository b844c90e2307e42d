"""Shared helpers: paths and running the engine in a subprocess with an events pipe."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1]
SRC = ENGINE / "src"
CONFIG_SRC = ENGINE / "templates" / "config" / "src"
SAMPLE = ENGINE / "samples" / "members.csv"


def run_engine(*args: str, config_src: Path = CONFIG_SRC, events: bool = True):
    """Run `python -m ade_engine` and return (exit code, stdout, stderr, events)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(config_src)]))
    env.pop("ADE_EVENTS_FD", None)
    read_fd = write_fd = None
    if events:
        read_fd, write_fd = os.pipe()
        env["ADE_EVENTS_FD"] = str(write_fd)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ade_engine", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        pass_fds=(write_fd,) if events else (),
    )
    lines: list[str] = []
    reader = None
    if events:
        os.close(write_fd)
        stream = os.fdopen(read_fd, "r", encoding="utf-8")
        reader = threading.Thread(target=lambda: (lines.extend(stream), stream.close()))
        reader.start()
    out, err = proc.communicate(timeout=60)
    if reader is not None:
        reader.join(timeout=10)
    return proc.returncode, out, err, [json.loads(line) for line in lines]


def of_type(events: list[dict], event_type: str) -> list[dict]:
    """Payloads of the events with the given type, in order."""
    return [e["payload"] for e in events if e["type"] == event_type]
