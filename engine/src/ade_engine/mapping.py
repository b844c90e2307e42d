"""Mapping input columns to configured fields, and projecting data rows onto them."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .config import Field
from .header import normalize


@dataclass
class ColumnMap:
    """Which input column feeds each field, plus what was left over."""

    columns: list[dict]
    unmapped_headers: list[str]
    missing_fields: list[Field]

    def indexes(self) -> dict[str, int]:
        """Field name to column index, for mapped fields only."""
        return {c["field"]: c["index"] for c in self.columns}


def map_columns(header: Sequence[str], fields: Sequence[Field]) -> ColumnMap:
    """Map each field to the first unclaimed column whose normalized header is a synonym."""
    keys = [normalize(cell) for cell in header]
    claimed: set[int] = set()
    columns: list[dict] = []
    missing: list[Field] = []
    for field in fields:
        match = next(
            (i for i, key in enumerate(keys) if i not in claimed and key and key in field.synonyms),
            None,
        )
        if match is None:
            missing.append(field)
            continue
        claimed.add(match)
        columns.append({"field": field.name, "header": header[match].strip(), "index": match})
    unmapped = [cell.strip() for i, cell in enumerate(header) if i not in claimed and cell.strip()]
    return ColumnMap(columns, unmapped, missing)


def data_rows(rows: Sequence[Sequence[str]], header_index: int) -> Iterator[list[str]]:
    """Rows after the header with cells stripped, skipping fully blank rows."""
    for row in rows[header_index + 1:]:
        cells = [cell.strip() for cell in row]
        if any(cells):
            yield cells


def project(row: Sequence[str], fields: Sequence[Field], indexes: dict[str, int]) -> list[str]:
    """Values of `row` in field order; empty where a field is unmapped or the row is short."""
    values = []
    for field in fields:
        i = indexes.get(field.name)
        values.append(row[i] if i is not None and i < len(row) else "")
    return values
