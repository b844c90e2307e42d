"""XLSX workbooks (imported only when one arrives).

Two readers: python-calamine (Rust; about fifteen times faster, but it holds
a whole sheet in memory) for workbooks whose largest sheet is at most
CALAMINE_MAX_SHEET_BYTES of XML, and openpyxl in read-only mode (streams
rows, memory stays flat) beyond that or when calamine is not installed.
Cells keep their types: numbers, booleans, dates. Formulas give their cached
values. Hidden sheets are skipped unless named.
"""

CALAMINE_MAX_SHEET_BYTES = 64 << 20

from ..errors import InputError


def _largest_sheet(path: str, name: str) -> int:
    """Uncompressed size of the biggest worksheet part; refuses zips that are not workbooks."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"cannot read workbook {name}: {exc}", name) from None
    names = {e.filename for e in entries}
    if "xl/workbook.xml" not in names:
        what = "an OpenDocument file" if "content.xml" in names else "a zip archive"
        raise InputError(f"{name} is {what}, not an XLSX workbook", name)
    return max([e.file_size for e in entries if e.filename.startswith("xl/worksheets/")] or [0])


def _calamine(path: str, name: str):
    """A calamine workbook, or None when calamine is missing or the workbook is too big for it."""
    if _largest_sheet(path, name) > CALAMINE_MAX_SHEET_BYTES:
        return None
    try:
        import python_calamine
    except ImportError:
        return None
    try:
        return python_calamine.CalamineWorkbook.from_path(path)
    except MemoryError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read workbook {name}: {type(exc).__name__}: {exc}", name) from None


def _load(path: str, name: str):
    try:
        import openpyxl
    except ImportError as exc:
        raise InputError(f"{name} is an XLSX workbook, but openpyxl is not installed: {exc}", name) from None
    handle = open(path, "rb")
    try:
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


class CalamineSheet:
    """One worksheet read by calamine (whole sheet in memory, rows handed out one by one)."""

    def __init__(self, source: "WorkbookSource", metadata, index: int):
        self.source = source
        self.name = metadata.name
        self.index = index
        self.hidden = str(metadata.visible).rsplit(".", 1)[-1] != "Visible"
        self._rows_read = 0
        self._height = 0

    def rows(self):
        """(row number, cells) for every row, trailing empty cells dropped."""
        try:
            sheet = self.source.workbook.get_sheet_by_name(self.name)
            # calamine's rows start at row 1, its columns at the first used column.
            start = sheet.start or (0, 0)
            self._height = (sheet.end or (0, 0))[0] + 1
            pad = [None] * start[1]
            for number, row in enumerate(sheet.iter_rows(), 1):
                self._rows_read = number
                cells = pad + row if pad else row
                while cells and (cells[-1] == "" or cells[-1] is None):
                    cells.pop()
                yield number, cells
        except (InputError, MemoryError):
            raise
        except Exception as exc:
            name = self.source.name
            raise InputError(f"cannot read sheet {self.name!r} of {name}: {type(exc).__name__}: {exc}",
                             name) from None

    def percent(self) -> float | None:
        """Rows handed out against the sheet's height."""
        return min(100.0, 100.0 * self._rows_read / self._height) if self._height else None


class WorkbookSource:
    """An XLSX input and the sheets to read from it."""

    kind = "xlsx"

    def __init__(self, path: str, name: str, wanted: list[str]):
        self.path = path
        self.name = name
        self.wanted = wanted
        self.replaced = 0
        self._handle = None
        self.workbook = _calamine(path, name)
        self.reader = "calamine"
        if self.workbook is None:
            self.workbook, self._handle = _load(path, name)
            self.reader = "openpyxl"

    def _all_sheets(self) -> list:
        if self.reader == "calamine":
            return [CalamineSheet(self, m, i) for i, m in enumerate(self.workbook.sheets_metadata)
                    if str(m.typ).endswith("WorkSheet")]
        return [WorkbookSheet(self, ws, i) for i, ws in enumerate(self.workbook.worksheets)]

    def describe(self) -> str:
        """Sheet names and reader, for the console."""
        names = ", ".join(repr(s.name) for s in self._all_sheets())
        return f"xlsx workbook read by {self.reader}, sheets {names}"

    def sheets(self) -> list:
        """The sheets to read: those named by --input-sheet, else every visible one."""
        all_sheets = self._all_sheets()
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
            if self._handle is not None:
                self._handle.close()
