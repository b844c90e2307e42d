"""XLSX workbooks through openpyxl in read-only mode (imported only here).

Cells keep their types: numbers, booleans, and dates as `datetime`.
Formulas give their cached values. Hidden sheets are skipped unless named.
"""

from ..errors import InputError


def _load(path: str, name: str):
    try:
        import openpyxl
    except ImportError as exc:
        raise InputError(f"{name} is an XLSX workbook, but openpyxl is not installed: {exc}", name) from None
    handle = open(path, "rb")
    try:
        import zipfile

        names = set(zipfile.ZipFile(handle).namelist())
        if "xl/workbook.xml" not in names:
            what = "an OpenDocument file" if "content.xml" in names else "a zip archive"
            raise InputError(f"{name} is {what}, not an XLSX workbook", name)
        handle.seek(0)
        return openpyxl.load_workbook(handle, read_only=True, data_only=True), handle
    except InputError:
        handle.close()
        raise
    except MemoryError:
        handle.close()
        raise
    except Exception as exc:
        handle.close()
        raise InputError(f"cannot read workbook {name}: {type(exc).__name__}: {exc}", name) from None


def _matches(title: str, wanted: list[str]) -> bool:
    folded = title.strip().casefold()
    return any(title == w or folded == w.strip().casefold() for w in wanted)


class WorkbookSheet:
    """One worksheet, read row by row."""

    def __init__(self, source: "WorkbookSource", worksheet, index: int):
        self.source = source
        self.worksheet = worksheet
        self.name = worksheet.title
        self.index = index
        self.hidden = getattr(worksheet, "sheet_state", "visible") != "visible"
        self._rows_read = 0
        self._max_row = None

    def rows(self):
        """(row number, cells) for every row, trailing empty cells dropped."""
        ws = self.worksheet
        try:
            self._max_row = ws.max_row if isinstance(ws.max_row, int) and ws.max_row > 1 else None
            ws.reset_dimensions()
            for number, row in enumerate(ws.iter_rows(values_only=True), 1):
                self._rows_read = number
                cells = list(row)
                while cells and cells[-1] is None:
                    cells.pop()
                yield number, cells
        except (InputError, MemoryError):
            raise
        except Exception as exc:
            name = self.source.name
            raise InputError(f"cannot read sheet {self.name!r} of {name}: {type(exc).__name__}: {exc}",
                             name) from None

    def percent(self) -> float | None:
        """Rows read against the sheet's declared size, when it declares one."""
        if not self._max_row:
            return None
        return min(100.0, 100.0 * self._rows_read / self._max_row)


class WorkbookSource:
    """An XLSX input and the sheets to read from it."""

    kind = "xlsx"

    def __init__(self, path: str, name: str, wanted: list[str]):
        self.path = path
        self.name = name
        self.wanted = wanted
        self.workbook, self._handle = _load(path, name)
        self.replaced = 0

    def describe(self) -> str:
        """Sheet names, for the console."""
        return "xlsx workbook, sheets " + ", ".join(repr(ws.title) for ws in self.workbook.worksheets)

    def sheets(self) -> list[WorkbookSheet]:
        """The sheets to read: those named by --input-sheet, else every visible one."""
        all_sheets = [WorkbookSheet(self, ws, i) for i, ws in enumerate(self.workbook.worksheets)]
        if not self.wanted:
            return [s for s in all_sheets if not s.hidden]
        chosen = [s for s in all_sheets if _matches(s.name, self.wanted)]
        if not chosen:
            present = ", ".join(repr(s.name[:40]) for s in all_sheets[:20])
            wanted = ", ".join(repr(w[:40]) for w in self.wanted[:20])
            raise InputError(f"{self.name} has none of the sheets {wanted}; its sheets are {present}", self.name)
        return chosen

    def close(self) -> None:
        """Close the workbook and its file."""
        try:
            self.workbook.close()
        finally:
            self._handle.close()
