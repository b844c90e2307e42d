"""What the configuration's hooks and validators see of a run, a sheet, a table and a row.

These objects are made per run; `RunContext.state` is the place for a
configuration's per-run data (a warm engine imports a configuration once
and runs it many times, so module globals would leak between runs).
"""


class RunContext:
    """The run: its inputs, options and a `state` dict for the configuration."""

    def __init__(self, inputs, output_dir, dry_run, validate_only, input_sheets, settings, fields):
        self.inputs = list(inputs)
        self.output_dir = output_dir
        self.dry_run = dry_run
        self.validate_only = validate_only
        self.input_sheets = list(input_sheets)
        self.settings = dict(settings)
        self.fields = [f.name for f in fields]
        self.state: dict = {}
        self.summary: dict | None = None

    def log(self, message: str) -> None:
        """Print a line to the run's console."""
        print(message, flush=True)


class SheetContext:
    """A sheet about to be read (`name` is None for delimited text)."""

    def __init__(self, run, input_name, name, index):
        self.run = run
        self.input = input_name
        self.name = name
        self.index = index


class TableContext:
    """A table found in a sheet.

    In `on_table_mapped`, `mapping` (field name → 0-based column index, or
    None) may be changed; `columns` holds each column's header and sample
    values, `scores` each field's score per column header. After validation
    `rows` and `issues` are filled in.
    """

    def __init__(self, run, sheet, index, header_rows, header, columns, mapping, scores):
        self.run = run
        self.sheet = sheet
        self.input = sheet.input
        self.index = index
        self.header_rows = header_rows
        self.header = header
        self.columns = columns
        self.mapping = mapping
        self.scores = scores
        self.rows = 0
        self.issues = {"errors": 0, "warnings": 0}


class RowContext:
    """The row a two-argument validator is looking at."""

    __slots__ = ("row", "table", "run")

    def __init__(self, table):
        self.table = table
        self.run = table.run
        self.row = 0
