"""Finding tables in a sheet: header rows, data rows, and what to skip, by scoring rows.

A sheet is read once, as a stream. The scanner looks for a header in a
window of rows (the best-scoring row that names fields; a row above or
below joins it when that makes a better two-line header, as with merged
group headings), then classifies each following row: data, blank, a totals
row, a note (a lone text cell in a wide table), a repeated header (skipped),
or the header of a new table, which ends the current one.
"""

from .headers import looks_like_data

WINDOW_ROWS = 25          # non-blank rows scored when looking for a header
MAX_WINDOW_ROWS = 400     # rows (blank included) in one window
MAX_WINDOWS = 4           # windows searched before giving up on a sheet
_TOTALS = ("total", "totals", "grand total", "subtotal", "sub-total", "sum")


def is_blank(cells) -> bool:
    """No cell holds anything but whitespace."""
    for cell in cells:
        if cell is not None and (type(cell) is not str or cell.strip()):
            return False
    return True


def filled(cells) -> list:
    """The non-empty cells."""
    return [c for c in cells if c is not None and (type(c) is not str or c.strip())]


def is_totals(cells) -> bool:
    """A row whose first filled cell says total/subtotal/sum and that holds something else."""
    values = filled(cells)
    if len(values) < 2 or type(values[0]) is not str:
        return False
    first = values[0].strip().lower().rstrip(":").strip()
    return any(first == word or first.startswith(word + " ") or first.startswith(word + ":")
               for word in _TOTALS)


def data_like(cells) -> int:
    """How many cells are plainly data (numbers, dates, emails, digit strings)."""
    count = 0
    for cell in cells:
        if cell is None:
            continue
        if type(cell) is not str or looks_like_data(cell):
            count += 1
    return count


class Header:
    """A table's header: the row numbers it spans and the text of each column."""

    def __init__(self, rows: list[int], cells: list[str], score: float, matched: int):
        self.rows = rows
        self.cells = cells
        self.score = score
        self.matched = matched


def _text(cell) -> str:
    if cell is None:
        return ""
    return cell.strip() if type(cell) is str else str(cell)


def combine(upper, lower) -> list[str]:
    """Two header rows as one: the upper row's headings carried right over empty (merged) cells."""
    width = max(len(upper), len(lower))
    out, carried = [], ""
    for index in range(width):
        top = _text(upper[index]) if index < len(upper) else ""
        if top:
            carried = top
        bottom = _text(lower[index]) if index < len(lower) else ""
        out.append(f"{carried} {bottom}".strip() if bottom or top else "")
    return out


class Scanner:
    """Splits a sheet's row stream into tables; see the module doc."""

    def __init__(self, rows, scorer, row_label, minimum_matches: int, header_forms: frozenset):
        self._rows = iter(rows)
        self.header_forms = header_forms
        self._back: list = []
        self.scorer = scorer
        self.row_label = row_label
        self.minimum = minimum_matches
        self.exhausted = False
        self.skipped = {"blank": 0, "totals": 0, "notes": 0, "repeated_headers": 0, "outside_tables": 0}

    def _next(self):
        if self._back:
            return self._back.pop()
        row = next(self._rows, None)
        if row is None:
            self.exhausted = True
        return row

    def _push(self, rows) -> None:
        self._back.extend(reversed(rows))

    # -- looking for a header -------------------------------------------------

    def next_header(self) -> Header | None:
        """Read until the next table's header; None when the sheet has no more tables."""
        windows = 0
        while windows < MAX_WINDOWS:
            window = self._window()
            if not window:
                return None
            windows += 1
            header = self._choose(window)
            if header is not None:
                return header
            self.skipped["outside_tables"] += len(window)
        self.exhausted = True
        return None

    def _window(self) -> list:
        window, nonblank = [], 0
        while nonblank < WINDOW_ROWS and len(window) < MAX_WINDOW_ROWS:
            row = self._next()
            if row is None:
                break
            window.append(row)
            if not is_blank(row[1]):
                nonblank += 1
        return window

    def _candidate(self, cells, forced: bool) -> tuple[float, int]:
        values = filled(cells)
        if len(values) < 2 and not forced:
            return 0.0, 0
        score, matched = self.scorer.row_score(values)
        score -= 0.5 * data_like(values)
        if forced:
            return score + 100.0, max(matched, self.minimum)
        return score, matched

    def _choose(self, window) -> Header | None:
        scored = []
        for position, (number, cells) in enumerate(window):
            label = self.row_label(number, cells)
            if label == "skip":
                continue
            forced = label == "header"
            score, matched = self._candidate(cells, forced)
            if matched >= self.minimum and score > 0:
                scored.append((position, score, matched))
        if not scored:
            return None
        best = max(s for _, s, _ in scored)
        position, score, matched = next(c for c in scored if c[1] >= 0.75 * best)
        return self._settle(window, position, score, matched)

    def _settle(self, window, position: int, score: float, matched: int) -> Header:
        """Take the header row, joined with a neighbour row when that scores better."""
        number, cells = window[position]
        first, last = position, position
        header_cells = [_text(c) for c in cells]
        above = window[position - 1] if position > 0 else None
        below = window[position + 1] if position + 1 < len(window) else None
        if above and len(filled(above[1])) >= 2 and not data_like(above[1]):
            joined = combine(above[1], cells)
            joined_score, joined_matched = self.scorer.row_score(joined)
            if joined_score > score + 0.1:
                header_cells, score, matched, first = joined, joined_score, joined_matched, position - 1
        if below and filled(below[1]) and not data_like(below[1]) and first == position:
            joined = combine(cells, below[1])
            joined_score, joined_matched = self.scorer.row_score(joined)
            if joined_score > score + 0.1:
                header_cells, score, matched, last = joined, joined_score, joined_matched, position + 1
        for _, skipped_cells in window[:first]:
            self.skipped["blank" if is_blank(skipped_cells) else "outside_tables"] += 1
        self._push(window[last + 1:])
        rows = [window[i][0] for i in range(first, last + 1)]
        return Header(rows, header_cells, score, matched)

    # -- reading a table's rows ---------------------------------------------

    def rows(self, header: Header, wide: bool):
        """(row number, cells) of the table's data rows; stops at the next table's header.

        `wide`: the table maps three or more columns, so a lone text cell is a note.
        """
        forms = set(self.header_forms)
        forms.update(c.lower() for c in header.cells if c)
        gap = False
        back, source, row_label = self._back, self._rows, self.row_label
        while True:
            row = back.pop() if back else next(source, None)  # self._next(), inline: called per row
            if row is None:
                self.exhausted = True
                return
            number, cells = row
            label = row_label(number, cells)
            if label == "skip":
                self.skipped["notes"] += 1
                gap = True
                continue
            if label == "header":
                self._push([row])
                return
            if label != "data":
                kind = self._classify(cells, forms, header.cells, gap, wide)
                if kind == "new_table":
                    self._push([row])
                    return
                if kind is not None:
                    self.skipped[kind] += 1
                    gap = gap or kind != "repeated_headers"
                    continue
            gap = False
            yield number, cells

    def _classify(self, cells, forms, header_cells, gap: bool, wide: bool) -> str | None:
        """What a non-data row is (blank, totals, notes, repeated_headers, new_table), or None for data.

        Called for every row, so the common case (a data row) costs a few string operations.
        """
        first = cells[0] if cells else None
        if first is None or first == "" or (type(first) is str and first.isspace()):
            first = None
            for cell in cells:
                if cell is not None and (type(cell) is not str or cell.strip()):
                    first = cell
                    break
            if first is None:
                return "blank"
        if type(first) is str:
            key = first.strip().lower()
            if key[:1] in "tgs" and is_totals(cells):
                return "totals"
            if key.rstrip(":").strip() in forms:
                kind = self._header_row(cells, forms, header_cells, gap)
                if kind:
                    return kind
        if gap:
            values = filled(cells)
            score, matched = self._candidate(values, False)
            if matched >= max(2, self.minimum) and score > 0:
                return "new_table"
        if wide and (len(cells) < 2 or cells[1] is None or cells[1] == "") \
                and len(cells) - cells.count("") - cells.count(None) <= 1:
            values = filled(cells)
            if len(values) == 1 and _is_note(values[0], gap):
                return "notes"
        return None

    def _header_row(self, cells, forms, header_cells, gap: bool) -> str | None:
        """`repeated_headers` or `new_table` when most filled cells are header spellings."""
        values = filled(cells)
        hits = sum(1 for c in values if type(c) is str and c.strip().lower().rstrip(":").strip() in forms)
        if hits < 2 or hits * 2 < len(values):
            return None
        same = [_text(c).lower() for c in cells] == [c.lower() for c in header_cells]
        return "repeated_headers" if same and not gap else "new_table"


def _is_note(value, gap: bool) -> bool:
    """A lone cell that reads as a remark (words, a trailing colon, long) or a title after a gap."""
    if type(value) is not str or not any(c.isalpha() for c in value):
        return False
    text = value.strip()
    return gap or " " in text or text.endswith(":") or len(text) > 30
