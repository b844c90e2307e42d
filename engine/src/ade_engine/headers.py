"""Scoring header cells against fields, with a cache: header rows repeat, data rarely looks like one."""

from .text import compact, similarity, tokens

_CACHE_LIMIT = 20000


def looks_like_data(text: str) -> bool:
    """Text that reads as a value, not a heading: an email, or mostly digits (ids, dates, amounts)."""
    if "@" in text:
        return True
    digits = sum(1 for c in text if c.isdigit())
    return digits > 0 and digits * 2 >= sum(1 for c in text if not c.isspace())


def is_header_like(value) -> bool:
    """Text that could be a column header: short, with letters, not data."""
    if type(value) is not str:
        return False
    text = value.strip()
    if not text or len(text) > 60 or text.count(" ") >= 7 or looks_like_data(text):
        return False
    return any(c.isalpha() for c in text)


class HeaderScorer:
    """Scores of a header text for every field: the best similarity among the field's variants."""

    def __init__(self, fields):
        self.fields = fields
        self._zero = tuple(0.0 for _ in fields)
        self._exact: dict = {}
        for field in fields:
            for variant in field.variants:
                self._exact.setdefault(compact(variant), set()).add(field.index)
        self._cache: dict = {}

    def scores(self, text) -> tuple:
        """Per-field scores (0..1) of a header cell."""
        if not is_header_like(text):
            return self._zero
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        words = tokens(text)
        result = self._zero
        if words:
            exact = self._exact.get(compact(words), ())
            result = tuple(1.0 if f.index in exact and words in f.variants else
                           (0.98 if f.index in exact else max((similarity(words, v) for v in f.variants), default=0.0))
                           for f in self.fields)
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[text] = result
        return result

    def row_score(self, cells) -> tuple[float, int]:
        """(score, fields matched) of a row as a header: each field counted once, at its best cell."""
        best = [0.0] * len(self.fields)
        for cell in cells:
            scores = self.scores(cell)
            if scores is self._zero:
                continue
            for index, score in enumerate(scores):
                if score > best[index]:
                    best[index] = score
        strong = [s for s in best if s >= 0.6]
        return sum(strong), len(strong)
