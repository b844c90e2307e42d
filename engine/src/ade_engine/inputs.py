"""One input file: its sheets, their tables, and its outputs.

Outputs of an input named `<stem>.<ext>`: `<stem>.normalized.xlsx` (a sheet
per table, `Table 1`…, then `Issues`) and `<stem>.table-<n>.csv` per table.
Issues of the input are spooled to a hidden temporary file while tables are
written, then copied into the Issues sheet, so memory stays flat.
"""

import _csv

from . import usercode
from .context import SheetContext
from .detect import Scanner
from .issues import ISSUE_COLUMNS, make
from .readers import open_input
from .table import TableRun
from .writers.xlsx import XlsxWriter

PROGRESS_MIN_ROWS = 5000
PROGRESS_STEP = 10.0


class TableOutputs:
    """The open writers of one table (any may be None)."""

    def __init__(self):
        self.csv_name = None
        self.csv_handle = None
        self.csv_write = None
        self.sheet = None
        self.sheet_write = None
        self.sheet_full = None


class InputRun:
    """Reads one input and writes its outputs; shared state lives on the RunState `run`."""

    def __init__(self, run, path: str):
        self.run = run
        self.config = run.config
        self.scorer = run.scorer
        self.run_ctx = run.context
        self.path = path
        self.input_name = path.replace("\\", "/").rsplit("/", 1)[-1]
        self.types = {f.name: f.type for f in self.config.fields}
        self.typed_cells = False
        self.tables = 0
        self.rows = 0
        self.stem = None
        self.book = None
        self.book_name = None
        self._spool = None
        self._spool_name = None
        self._progress_next = PROGRESS_STEP

    # -- console, issues, progress ----------------------------------------------

    def say(self, line: str) -> None:
        """A console line."""
        print(line)

    def issue(self, sheet, table, row, column, cell, field, value, severity, code, message) -> None:
        """Record an issue of this input."""
        self.run.issues.add(make(self.input_name, sheet, table, row, column, cell, field, value, severity,
                                 code, message))

    def _keep(self, issue: dict) -> None:
        self._spool_writer.writerow([issue[k] for k in ISSUE_COLUMNS])

    def progress(self, sheet, table_rows: int) -> None:
        """Emit `run.progress` at every 10% of a large input."""
        rows = self.rows + table_rows
        if rows < PROGRESS_MIN_ROWS:
            return
        percent = sheet.percent()
        if percent is None or percent < self._progress_next:
            return
        self._progress_next = (percent // PROGRESS_STEP + 1) * PROGRESS_STEP
        self.run.sink.emit("run.progress", {"input": self.input_name, "sheet": sheet.name, "rows": rows,
                                            "percent": round(percent, 1)})

    # -- outputs ---------------------------------------------------------------

    def _open_outputs(self) -> None:
        outputs = self.run.outputs
        self.stem = outputs.stem_for(self.input_name)
        if not outputs.enabled:
            return
        if "xlsx" in self.config.settings["outputs"]:
            self.book_name = f"{self.stem}.normalized.xlsx"
            self.book = XlsxWriter(outputs.create(self.book_name))
            self._spool_name = f"{self.stem}.issues.spool"
            self._spool = outputs.create(self._spool_name, text=True)
            self._spool_writer = _csv.writer(self._spool)
            self.run.issues.keep = self._keep

    def open_table(self, number: int, header: list[str]) -> TableOutputs:
        """Writers for table `number` of this input."""
        out = TableOutputs()
        outputs = self.run.outputs
        if not outputs.enabled:
            return out
        if "csv" in self.config.settings["outputs"]:
            out.csv_name = f"{self.stem}.table-{number}.csv"
            out.csv_handle = outputs.create(out.csv_name, text=True)
            writer = _csv.writer(out.csv_handle)
            writer.writerow(header)
            out.csv_write = writer.writerow
        if self.book is not None:
            out.sheet = self.book.sheet(f"Table {number}", header)
            out.sheet_write = out.sheet.write_row

            def full(sheet_name, table, row):
                self.issue(sheet_name, table, row, None, None, None, None, "warning", "xlsx_sheet_full",
                           f"the XLSX sheet 'Table {table}' is full (Excel's row limit or the zip size "
                           f"limit); rows from row {row} on are only in the CSV output")
                return None

            out.sheet_full = full
        return out

    def close_table(self, out: TableOutputs) -> dict:
        """Finish a table's writers; the names of its outputs."""
        names = {"csv": None, "xlsx": None, "xlsx_sheet": None}
        if out.csv_handle is not None:
            self.run.outputs.commit(out.csv_name)
            names["csv"] = out.csv_name
        if out.sheet is not None:
            out.sheet.close()
            names["xlsx"] = self.book_name
            names["xlsx_sheet"] = out.sheet.title
        return names

    def _finish_book(self) -> None:
        if self.book is None:
            return
        self.run.issues.keep = None
        self._spool.flush()
        outputs = self.run.outputs
        sheet = self.book.sheet("Issues", list(ISSUE_COLUMNS))
        path = outputs.temp_path(self._spool_name)
        with open(path, encoding="utf-8", newline="") as handle:
            for row in _csv.reader(handle):
                values = [None if v == "" else v for v in row]
                for index in (1, 2):
                    if values[index] is not None and values[index].isdigit():
                        values[index] = int(values[index])
                if not sheet.write_row(values):
                    break
        sheet.close()
        outputs.discard(self._spool_name)
        self.book.close()
        outputs.commit(self.book_name)

    # -- reading ---------------------------------------------------------------

    def process(self) -> dict:
        """Read every selected sheet; return this input's summary."""
        run = self.run
        run.sink.emit("run.phase.started", {"phase": "read_input", "input": self.input_name})
        source = open_input(self.path, run.context.input_sheets)
        sheets_summary = []
        try:
            self.say(f"reading {self.input_name} ({source.describe()})")
            if source.kind == "text" and run.context.input_sheets:
                self.say("note: --input-sheet does not apply to delimited text")
            self.typed_cells = source.kind == "xlsx"
            self._open_outputs()
            for sheet in source.sheets():
                sheets_summary.append(self._sheet(sheet))
            if source.replaced:
                self.issue(None, None, None, None, None, None, None, "warning", "undecodable_bytes",
                           f"{source.replaced} bytes could not be decoded as {source.encoding} and were "
                           "replaced by U+FFFD")
            if not self.tables:
                self.issue(None, None, None, None, None, None, None, "warning", "no_table_found",
                           "no table with a header naming the configured fields was found")
                self.say(f"no table found in {self.input_name}")
            self._finish_book()
        finally:
            source.close()
        return {"input": self.input_name, "tables": self.tables, "rows": self.rows, "sheets": sheets_summary}

    def _sheet(self, sheet) -> dict:
        run, config = self.run, self.config
        context = SheetContext(run.context, self.input_name, sheet.name, sheet.index)
        hook = config.hooks.get("on_sheet_start")
        if hook and usercode.call("hook on_sheet_start", hook, run.context, context) is False:
            self.say(f"sheet {sheet.name!r} skipped by on_sheet_start")
            return {"name": sheet.name, "tables": 0, "skipped": True}
        scanner = Scanner(sheet.rows(), self.scorer, run.row_label, min(2, len(config.fields)),
                          config.header_forms)
        before = self.tables
        while True:
            skipped_before = dict(scanner.skipped)
            header = scanner.next_header()
            if header is None:
                break
            self.tables += 1
            run.sink.emit("run.phase.started", {"phase": "map_columns", "input": self.input_name,
                                                "sheet": sheet.name, "table": self.tables})
            summary = TableRun(self, context, sheet, scanner, header, self.tables).run(skipped_before)
            self.rows += summary["rows"]
            run.table_done(summary)
        if self.tables == before and sheet.name is not None:
            self.say(f"sheet {sheet.name!r}: no table found")
        return {"name": sheet.name, "tables": self.tables - before, "skipped": False}
