"""Column mapping: score every (column, field) pair from the header, the sample
values and the configuration's column detectors; the best assignment wins.

A pair's score is its header score `h` (see text.similarity), raised by
value evidence `v` (the share of sample values that parse as the field's
type) as `h + (1 - h) * w * v`, where `w` says how telling values of that
type are (emails and phones: very; dates: somewhat; ids and numbers: little).
A header that names something else (0 < h < 0.6) halves that help; values
that do not fit a typed field cost up to 0.3, unless the header names the
field outright (h ≥ 0.95: then bad values are issues, not a reason to doubt). Detector adjustments are
added last and the result is kept in 0..1.
"""

from . import usercode
from .assign import best_assignment
from .errors import ConfigError
from .values import PARSERS, Invalid, date_order, parse_date

VALUE_WEIGHTS = {"email": 0.7, "phone": 0.65, "date": 0.5, "boolean": 0.3, "number": 0.2,
                 "integer": 0.2, "id": 0.2, "string": 0.0}
_PENALIZED = ("email", "phone", "date", "boolean", "number", "integer")
TIE_MARGIN = 0.05
LOW_SCORE = 0.35


def letter(index: int) -> str:
    """Spreadsheet column letter of a 0-based index: 0 → A, 26 → AA."""
    name = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        name = chr(65 + remainder) + name
    return name


class Column:
    """A column as detectors see it: its position, header text and sample values."""

    __slots__ = ("index", "letter", "header", "values", "input", "sheet")

    def __init__(self, index: int, header: str, values: list, input_name: str, sheet):
        self.index = index
        self.letter = letter(index)
        self.header = header
        self.values = values
        self.input = input_name
        self.sheet = sheet

    def __repr__(self) -> str:
        return f"Column({self.letter}, {self.header!r})"


def value_score(field_type: str, values: list) -> float:
    """Share of non-empty sample values that parse as `field_type` (ids: also how unique)."""
    if field_type == "string" or not values:
        return 0.0
    parser = PARSERS[field_type]
    if field_type == "date":
        def parser(value):
            parsed = parse_date(value, "MDY")
            return parse_date(value, "DMY") if type(parsed) is Invalid else parsed
    good = sum(1 for v in values if type(parser(v)) is not Invalid)
    share = good / len(values)
    if field_type == "id":
        share *= len({str(v) for v in values}) / len(values)
    if field_type in ("number", "integer") and share:
        share *= 0.5 if all(type(v) is str and len(v.strip()) > 12 for v in values) else 1.0
    return share


def pair_score(header: float, field_type: str, values_share: float, samples: int) -> float:
    """Header and value evidence combined (see the module doc)."""
    weight = VALUE_WEIGHTS[field_type]
    boost = (1 - header) * weight * values_share
    if 0 < header < 0.6:
        boost *= 0.5
    score = header + boost
    if field_type in _PENALIZED and samples >= 3 and header < 0.95:
        score -= 0.3 * (1 - values_share)
    return score


class Mapping:
    """The result: which column feeds each field, with every score, ties and weak candidates."""

    def __init__(self, columns, assigned, scores, details, ties, low):
        self.columns: list[Column] = columns
        self.assigned: dict[str, int] = assigned
        self.scores = scores
        self.details = details
        self.ties = ties
        self.low = low


def _samples(rows, width: int) -> list[list]:
    columns = [[] for _ in range(width)]
    for _, cells in rows:
        for index, cell in enumerate(cells[:width]):
            if cell is None or (type(cell) is str and not cell.strip()):
                continue
            columns[index].append(cell)
    return columns


def _detect(config, columns: list[Column], scores: list[list[float]]) -> None:
    """Add the configuration's column-detector adjustments to the scores."""
    for name, detector in config.column_detectors:
        for column in columns:
            result = usercode.call(f"column detector {name}", detector, column)
            if result is None:
                continue
            if not isinstance(result, dict):
                raise ConfigError(f"column detector {name} returned {type(result).__name__}; "
                                  "return a dict of field name → score adjustment, or None")
            for field_name, adjustment in result.items():
                field = config.by_name.get(field_name)
                if field is None or isinstance(adjustment, bool) or not isinstance(adjustment, (int, float)):
                    raise ConfigError(f"column detector {name} returned {field_name!r}: {adjustment!r}; "
                                      "keys must be field names and values numbers")
                scores[field.index][column.index] += adjustment


def map_columns(config, scorer, header_cells: list[str], sample_rows: list, input_name: str, sheet):
    """Score and assign; `sample_rows` are (number, cells) of the table's first data rows."""
    width = max([len(header_cells)] + [len(cells) for _, cells in sample_rows])
    values = _samples(sample_rows, width)
    columns = [Column(i, header_cells[i] if i < len(header_cells) else "", values[i], input_name, sheet)
               for i in range(width)]
    fields = config.fields
    header_scores = [scorer.scores(c.header) for c in columns]
    shares = {}
    scores, details = [], []
    for field in fields:
        row, detail = [], []
        for column in columns:
            key = (field.type, column.index)
            if key not in shares:
                shares[key] = value_score(field.type, column.values)
            h = header_scores[column.index][field.index]
            row.append(pair_score(h, field.type, shares[key], len(column.values)))
            detail.append((h, shares[key]))
        scores.append(row)
        details.append(detail)
    _detect(config, columns, scores)
    for row in scores:
        for index, score in enumerate(row):
            row[index] = round(min(1.0, max(0.0, score)), 4)
    threshold = config.settings["mapping_threshold"]
    gated = [[s if s >= threshold else 0.0 for s in row] for row in scores]
    assignment = best_assignment(gated)
    assigned = {fields[f].name: c for f, c in assignment.items() if gated[f][c] > 0}
    ties = _ties(fields, columns, scores, assigned, threshold)
    low = _low(fields, columns, scores, assigned, threshold)
    return Mapping(columns, assigned, scores, details, ties, low)


def _ties(fields, columns, scores, assigned, threshold) -> list[dict]:
    """Fields whose chosen column has a rival within TIE_MARGIN."""
    ties = []
    taken = set(assigned.values())
    for field in fields:
        chosen = assigned.get(field.name)
        if chosen is None:
            continue
        best = scores[field.index][chosen]
        rivals = [c for c in range(len(columns)) if c != chosen and c not in taken
                  and scores[field.index][c] >= threshold and best - scores[field.index][c] < TIE_MARGIN]
        for rival in rivals:
            ties.append({"field": field.name, "chosen": columns[chosen].header, "chosen_score": best,
                         "rival": columns[rival].header, "rival_score": scores[field.index][rival]})
    return ties


def _low(fields, columns, scores, assigned, threshold) -> list[dict]:
    """Unmapped columns whose best field scored between LOW_SCORE and the threshold."""
    low = []
    taken = set(assigned.values())
    for column in columns:
        if column.index in taken:
            continue
        best_field = max(fields, key=lambda f: scores[f.index][column.index])
        best = scores[best_field.index][column.index]
        if LOW_SCORE <= best < threshold or (best >= threshold and best_field.name in assigned):
            low.append({"column": column.header, "letter": column.letter, "field": best_field.name,
                        "score": best})
    return low


def choose_date_order(config, column: Column) -> str:
    """`DMY` or `MDY` for a date column: from its values when they tell, else from SETTINGS."""
    seen = date_order(column.values)
    if seen:
        return seen
    return "DMY" if config.settings["ambiguous_dates"] == "day_first" else "MDY"
