"""Reading delimited text inputs: encoding fallback and delimiter sniffing."""

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".txt")
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"


@dataclass
class Table:
    """The raw rows of one input, with how they were decoded."""

    rows: list[list[str]]
    encoding: str
    delimiter: str


def check_supported(path: Path) -> None:
    """Raise EngineError unless the file has a supported extension."""
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        raise EngineError(
            f"unsupported input type {path.suffix or '(no extension)'!r} for {path.name}: "
            f"this engine version reads only {supported}",
            path.name,
        )


def decode(data: bytes) -> tuple[str, str]:
    """Decode as UTF-8 (BOM allowed), falling back to latin-1."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _consistency_guess(sample: str) -> str | None:
    """Delimiter that splits the most sample rows into the same number (>1) of fields."""
    best, best_score = None, 0
    for delimiter in DELIMITERS:
        try:
            widths = [len(r) for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter) if any(r)]
        except csv.Error:
            continue
        wide = [w for w in widths if w > 1]
        if not wide:
            continue
        mode = max(set(wide), key=wide.count)
        score = wide.count(mode)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def sniff_delimiter(text: str, default: str = ",") -> str:
    """Guess the delimiter with csv.Sniffer, then a field-count heuristic, else `default`."""
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]
    if not sample.strip():
        return default
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return _consistency_guess(sample) or default


def read_table(path: Path) -> Table:
    """Read a delimited text file into rows of strings."""
    check_supported(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EngineError(f"cannot read {path.name}: {exc.strerror or exc}", path.name)
    text, encoding = decode(data)
    default = "\t" if path.suffix.lower() == ".tsv" else ","
    delimiter = sniff_delimiter(text, default)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise EngineError(f"cannot parse {path.name}: {exc}", path.name)
    return Table(rows, encoding, delimiter)
