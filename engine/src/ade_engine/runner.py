"""Orchestration of one engine run over its inputs."""

import argparse
import sys
import traceback
from pathlib import Path

from .config import Field, load_fields
from .errors import EngineError
from .events import EventSink
from .header import HEADER_SCAN_ROWS, detect_header
from .mapping import data_rows, map_columns, project
from .output import output_name, write_csv
from .reader import check_supported, read_table


class _Issues:
    """Counts of validation issues emitted so far."""

    def __init__(self) -> None:
        self.errors = 0
        self.warnings = 0

    def summary(self) -> dict:
        """Payload of `run.validation.summary`."""
        return {"issues": self.errors + self.warnings, "errors": self.errors, "warnings": self.warnings}


class _ValidationFailed(Exception):
    """Raised internally when an input fails validation; already reported."""


def _check_inputs(paths: list[Path]) -> None:
    """Fail before any work if an input is missing, unsupported or would share an output name."""
    outputs: dict[str, str] = {}
    for path in paths:
        check_supported(path)
        if not path.is_file():
            raise EngineError(f"input not found: {path.name}", path.name)
        name = output_name(path)
        if name in outputs:
            raise EngineError(f"inputs {outputs[name]} and {path.name} would both write {name}", path.name)
        outputs[name] = path.name


def _process(path: Path, fields: list[Field], args: argparse.Namespace,
             sink: EventSink, issues: _Issues) -> None:
    """Read, detect, map, validate and (unless told not to) write one input."""
    name = path.name
    print(f"reading {name}")
    sink.emit("run.phase.started", {"phase": "read_input", "input": name})
    table = read_table(path)
    if args.input_sheet:
        print(f"note: --input-sheet is ignored for CSV input {name}")
    print(f"read {len(table.rows)} rows ({table.encoding}, delimiter {table.delimiter!r})")
    sink.emit("run.progress", {"input": name, "rows": len(table.rows)})

    sink.emit("run.phase.started", {"phase": "detect_header", "input": name})
    header_index = detect_header(table.rows, fields)
    if header_index is None:
        raise EngineError(f"no header row found in the first {HEADER_SCAN_ROWS} rows of {name}", name)
    print(f"header found on row {header_index + 1}")

    sink.emit("run.phase.started", {"phase": "map_columns", "input": name})
    cmap = map_columns(table.rows[header_index], fields)
    for column in cmap.columns:
        print(f"mapped {column['header']!r} -> {column['field']}")
    if cmap.unmapped_headers:
        print(f"unmapped headers: {', '.join(cmap.unmapped_headers)}")
    failed = False
    for field in cmap.missing_fields:
        severity = "error" if field.required else "warning"
        code = "missing_required_field" if field.required else "missing_optional_field"
        if field.required:
            issues.errors += 1
            failed = True
            print(f"error: {name}: required field {field.name} ({field.label}) not found", file=sys.stderr)
        else:
            issues.warnings += 1
            print(f"warning: {name}: optional field {field.name} ({field.label}) not found", file=sys.stderr)
        sink.emit("run.validation.issue",
                  {"severity": severity, "code": code, "field": field.name, "input": name})

    rows = [project(row, fields, cmap.indexes()) for row in data_rows(table.rows, header_index)]
    output = None
    if failed:
        print(f"not writing output for {name}: required fields are missing")
    elif args.dry_run or args.validate_only:
        mode = "dry run" if args.dry_run else "validate only"
        print(f"{mode}: not writing output for {name} ({len(rows)} rows)")
    else:
        sink.emit("run.phase.started", {"phase": "write_output", "input": name})
        output = output_name(path)
        count = write_csv(Path(args.output_dir) / output, [f.name for f in fields], rows)
        print(f"wrote {output} ({count} rows)")

    sink.emit("run.table.summary", {
        "input": name,
        "header_row": header_index + 1,
        "rows": len(rows),
        "columns": cmap.columns,
        "unmapped_headers": cmap.unmapped_headers,
        "missing_fields": [f.name for f in cmap.missing_fields],
        "output": output,
    })
    if failed:
        raise _ValidationFailed()


def _fail(sink: EventSink, message: str, input_name: str | None) -> int:
    """Report a failure on stderr and as `run.error`; return exit code 1."""
    print(f"error: {message}", file=sys.stderr)
    sink.emit("run.error", {"message": message, "input": input_name})
    return 1


def run(args: argparse.Namespace, sink: EventSink) -> int:
    """Run the engine over all inputs; return 0 on success and 1 on any failure."""
    sink.emit("run.phase.started", {"phase": "load_config"})
    try:
        fields = load_fields()
    except Exception as exc:
        traceback.print_exc()
        return _fail(sink, f"cannot load configuration: {type(exc).__name__}: {exc}", None)
    print(f"configuration loaded: {len(fields)} fields ({', '.join(f.name for f in fields)})")

    issues = _Issues()
    status = 0
    try:
        paths = [Path(p) for p in args.input]
        _check_inputs(paths)
        for path in paths:
            try:
                _process(path, fields, args, sink, issues)
            except _ValidationFailed:
                status = 1
    except EngineError as exc:
        status = _fail(sink, exc.message, exc.input_name)
    except Exception as exc:
        traceback.print_exc()
        status = _fail(sink, f"unexpected error: {type(exc).__name__}: {exc}", None)
    sink.emit("run.validation.summary", issues.summary())
    print(f"validation: {issues.errors} errors, {issues.warnings} warnings")
    print("run failed" if status else "run succeeded")
    return status
