"""Writing normalized outputs atomically inside the output directory."""

import csv
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

OUTPUT_SUFFIX = ".normalized.csv"


def output_name(input_path: Path) -> str:
    """Output file name for an input: `<stem>.normalized.csv`."""
    return f"{input_path.stem}{OUTPUT_SUFFIX}"


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write rows to a temp file next to `path`, then rename it into place; return the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                count += 1
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return count
