"""Delimited text (CSV, TSV, …): encoding and delimiter detected, rows streamed.

Encodings: UTF-8 (with or without BOM), UTF-16 (BOM, or detected from NUL
bytes), else cp1252, else latin-1. Bytes that do not decode are replaced
and counted (`replaced`). Delimiters: `,` `;` TAB `|`, whichever splits the
sample's rows most consistently. Uses `_csv` directly: `csv` imports `re`.
"""

import _csv
import codecs
import io
import os

from ..errors import InputError

ENCODING_SAMPLE = 1 << 20
DELIMITER_SAMPLE = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")


class _Replaced:
    """Counts undecodable bytes of the file being read (replaced by U+FFFD)."""

    count = 0

    @classmethod
    def handler(cls, exc: UnicodeDecodeError):
        cls.count += exc.end - exc.start
        return "\ufffd", exc.end


codecs.register_error("ade_replace", _Replaced.handler)


def detect_encoding(sample: bytes) -> str:
    """The codec to read a file whose first bytes are `sample`."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    half = len(sample) // 2
    if half >= 2:
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        if odd > 0.3 * half and even < 0.05 * half:
            return "utf-16-le"
        if even > 0.3 * half and odd < 0.05 * half:
            return "utf-16-be"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3 and len(sample) >= ENCODING_SAMPLE:
            return "utf-8"
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def detect_delimiter(text: str, preferred: str = ",") -> str:
    """The delimiter that gives the most rows of one common width (>1)."""
    if len(text) > DELIMITER_SAMPLE:
        text = text[:DELIMITER_SAMPLE]
        if "\n" in text:
            text = text[: text.rindex("\n") + 1]
    order = [preferred] + [d for d in DELIMITERS if d != preferred]
    best, best_score = preferred, 0
    for delimiter in order:
        try:
            widths = [len(row) for row in _csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]
        except _csv.Error:
            continue
        wide = [w for w in widths if w > 1]
        if not wide:
            continue
        counts: dict[int, int] = {}
        for width in wide:
            counts[width] = counts.get(width, 0) + 1
        score = max(counts.values())
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _check_text(text: str, name: str) -> None:
    """Refuse content that is clearly binary (many control characters)."""
    sample = text[:8192]
    if not sample:
        return
    controls = sum(1 for c in sample if c < " " and c not in "\t\r\n")
    if controls > 0.05 * len(sample):
        raise InputError(f"{name} does not look like a text table (binary content)", name)


class DelimitedSheet:
    """The single sheet of a delimited text file."""

    def __init__(self, source: "DelimitedSource"):
        self.source = source
        self.name = None
        self.index = 0
        self.hidden = False
        self._handle = None

    def rows(self):
        """(row number, cells) for every line, cells as strings."""
        source = self.source
        raw = open(source.path, "rb")
        self._handle = raw
        try:
            text = io.TextIOWrapper(raw, encoding=source.encoding, errors="ade_replace", newline="")
            reader = _csv.reader(text, delimiter=source.delimiter)
            number = 0
            try:
                for number, row in enumerate(reader, 1):
                    yield number, row
            except _csv.Error as exc:
                raise InputError(f"cannot parse {source.name} near line {reader.line_num}: {exc}",
                                 source.name) from None
        finally:
            self._handle = None
            raw.close()

    def percent(self) -> float | None:
        """How much of the file has been read, 0..100."""
        if self._handle is None or not self.source.size:
            return None
        try:
            return min(100.0, 100.0 * self._handle.tell() / self.source.size)
        except (OSError, ValueError):
            return None


class DelimitedSource:
    """A delimited text input, with its detected encoding and delimiter."""

    kind = "text"

    def __init__(self, path: str, name: str):
        self.path = path
        self.name = name
        _Replaced.count = 0
        try:
            self.size = os.path.getsize(path)
            with open(path, "rb") as handle:
                sample = handle.read(ENCODING_SAMPLE)
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}", name) from None
        self.encoding = detect_encoding(sample)
        text = sample[: DELIMITER_SAMPLE * 4].decode(self.encoding, "replace")
        _check_text(text, name)
        preferred = "\t" if name.lower().endswith(".tsv") else ","
        self.delimiter = detect_delimiter(text, preferred)

    @property
    def replaced(self) -> int:
        """Bytes that did not decode and were replaced, so far."""
        return _Replaced.count

    def describe(self) -> str:
        """Encoding and delimiter, for the console."""
        shown = {"\t": "TAB"}.get(self.delimiter, self.delimiter)
        return f"text, {self.encoding.replace('-sig', ' with BOM')}, delimiter {shown!r}"

    def sheets(self):
        """The one sheet of the file."""
        return [DelimitedSheet(self)]

    def close(self) -> None:
        """Nothing to release: each sheet closes its file when read."""
