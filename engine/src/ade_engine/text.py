"""Header text: normalization into tokens, and how well a header names a field.

Standard library only and no `re`: this module is on the hot path of every
run, and `re` alone costs more start-up time than the rest of the engine.
"""

_ABBREVIATIONS = {"no": "number", "nr": "number", "num": "number", "nbr": "number", "#": "number"}
# Format hints and filler words that say nothing about which field a column holds.
_NOISE = frozenset({"the", "of", "a", "an", "yyyy", "yy", "mm", "dd", "mmm", "optional", "required", "if", "any"})


def _fold(text: str) -> str:
    """Lowercase, with accents removed (`Prénom` → `prenom`)."""
    if not text.isascii():
        import unicodedata

        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return text.lower()


def _split_camel(text: str) -> str:
    """`FirstName` → `First Name`; all-caps and lowercase words are kept whole."""
    out = []
    previous = ""
    for char in text:
        if char.isupper() and previous.islower():
            out.append(" ")
        out.append(char)
        previous = char
    return "".join(out)


def tokens(text: str) -> tuple[str, ...]:
    """Normalized words of a header: folded, split on non-alphanumerics and camel case.

    `#`, `No.` and `Nr` become `number`; a lone `e` before `mail` joins it
    (`E-mail` → `email`); format hints such as `(YYYY-MM-DD)` are dropped.
    """
    if not text:
        return ()
    text = _split_camel(text)
    chars = []
    for char in _fold(text):
        if char.isalnum():
            chars.append(char)
        elif char == "#":
            chars.append(" # ")
        else:
            chars.append(" ")
    words: list[str] = []
    for word in "".join(chars).split():
        word = _ABBREVIATIONS.get(word, word)
        if word == "mail" and words and words[-1] == "e":
            words[-1] = "email"
            continue
        words.append(word)
    meaningful = tuple(w for w in words if w not in _NOISE)
    return meaningful or tuple(words)


def compact(words: tuple[str, ...]) -> str:
    """The words run together: `first name` and `firstname` compare equal."""
    return "".join(words)


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (adjacent swaps count 1), or `limit + 1` once above it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        best = current[0]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
            best = min(best, value)
        if best > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[len(b)]


def within_edits(a: str, b: str, limit: int) -> bool:
    """Whether `edit_distance(a, b, limit) <= limit`, decided without the table.

    For the small limits of typos: past the common prefix, the first
    different character is substituted, deleted, inserted or swapped with
    its neighbour, and the rest must be within one edit fewer. A header's
    words are compared with every synonym the first time a process sees them
    (a run forked from a warm engine always looks first), so this is most of
    a small run's mapping.
    """
    if a == b:
        return True
    if limit <= 0 or abs(len(a) - len(b)) > limit:
        return False
    start = 0
    end = min(len(a), len(b))
    while start < end and a[start] == b[start]:
        start += 1
    a, b = a[start:], b[start:]
    if not a or not b:
        return True  # the rest of one is inserted: within the length check above
    rest = limit - 1
    return (
        within_edits(a[1:], b[1:], rest)
        or within_edits(a[1:], b, rest)
        or within_edits(a, b[1:], rest)
        or (len(a) > 1 and len(b) > 1 and a[0] == b[1] and a[1] == b[0] and within_edits(a[2:], b[2:], rest))
    )


def word_similarity(a: str, b: str) -> float:
    """1.0 for equal words, 0.85 for a likely typo (`emial`, `adress`), else 0."""
    if a == b:
        return 1.0
    shorter = min(len(a), len(b))
    if shorter < 4:
        return 0.0
    limit = 1 if shorter < 7 else 2
    return 0.85 if within_edits(a, b, limit) else 0.0


def similarity(header: tuple[str, ...], variant: tuple[str, ...]) -> float:
    """How well a header names a variant (a field's name, label or synonym), 0..1.

    Equal words score 1.0 and equal run-together spellings 0.98. Otherwise a
    header scores by coverage (how many of the variant's words it contains,
    typos counting 0.85) and precision (how much of the header those words
    are), at most 0.9: `Member First Name` names `first name` at 0.78.
    """
    if not header or not variant:
        return 0.0
    if header == variant:
        return 1.0
    if compact(header) == compact(variant):
        return 0.98
    covered = 0.0
    used: set[int] = set()
    for word in variant:
        best, best_index = 0.0, -1
        for index, candidate in enumerate(header):
            if index in used:
                continue
            score = word_similarity(word, candidate)
            if score > best:
                best, best_index = score, index
                if score == 1.0:
                    break
        if best_index >= 0:
            used.add(best_index)
            covered += best
    if not covered:
        return 0.0
    coverage = covered / len(variant)
    precision = len(used) / len(header)
    return round(0.9 * coverage * (0.6 + 0.4 * precision), 4)
