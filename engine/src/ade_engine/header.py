"""Text normalization and header-row detection."""

import re
from collections.abc import Iterable, Sequence

HEADER_SCAN_ROWS = 20

_NON_ALNUM = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Lowercase, strip, and collapse runs of non-alphanumerics into single spaces."""
    return _NON_ALNUM.sub(" ", text.lower()).strip()


def count_matches(row: Sequence[str], synonyms: set[str]) -> int:
    """Number of cells in a row whose normalized text is a known synonym."""
    return sum(1 for cell in row if normalize(cell) in synonyms)


def detect_header(rows: Sequence[Sequence[str]], fields: Iterable, limit: int = HEADER_SCAN_ROWS) -> int | None:
    """Index of the row (among the first `limit`) with most synonym matches; earliest on ties."""
    synonyms = {s for field in fields for s in field.synonyms}
    best_index, best_count = None, 0
    for index, row in enumerate(rows[:limit]):
        count = count_matches(row, synonyms)
        if count > best_count:
            best_index, best_count = index, count
    return best_index
