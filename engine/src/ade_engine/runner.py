"""One engine run: load the configuration, read every input, report.

Events, in order: `run.phase.started` (load_config), then per input
`run.phase.started` (read_input), per table `run.phase.started`
(map_columns), `run.validation.issue`s (capped), `run.progress` on large
inputs and `run.table.summary`; finally `run.validation.summary`, whose
`summary` field is the whole run summary (the worker copies it into
`run.completed.summary`). A failed run ends with `run.error` instead.
"""

import time

from . import config as config_module
from . import usercode
from .context import RunContext
from .errors import ConfigError
from .inputs import InputRun
from .issues import IssueLog
from .writers.files import Outputs

MAX_TABLES_IN_SUMMARY = 100
_ROW_LABELS = ("header", "data", "skip")


class RunState:
    """Everything one run shares across its inputs."""

    def __init__(self, options, sink, config):
        self.options = options
        self.sink = sink
        self.config = config
        self.scorer = config.scorer
        self.context = RunContext(options.inputs, options.output_dir, options.dry_run, options.validate_only,
                                  options.input_sheets, config.settings, config.fields)
        self.issues = IssueLog(sink, config.settings["max_issue_events"])
        self.outputs = Outputs(options.output_dir, not (options.dry_run or options.validate_only))
        self.tables: list[dict] = []
        self.table_count = 0
        self.row_count = 0
        self.row_label = self._row_label if config.row_detectors else _no_label

    def _row_label(self, number: int, cells) -> str | None:
        row = _Row(number, cells)
        for name, detector in self.config.row_detectors:
            try:
                label = detector(row)
            except MemoryError:
                raise
            except (Exception, SystemExit) as exc:
                raise usercode.wrap(exc, f"row detector {name}") from exc
            if label is None:
                continue
            if label not in _ROW_LABELS:
                raise ConfigError(f"row detector {name} returned {label!r}; return 'header', 'data', "
                                  "'skip' or None")
            return label
        return None

    def table_done(self, summary: dict) -> None:
        """Emit a table's summary and keep its short form for the run summary."""
        self.sink.emit("run.table.summary", summary)
        self.table_count += 1
        self.row_count += summary["rows"]
        if len(self.tables) < MAX_TABLES_IN_SUMMARY:
            self.tables.append({
                "input": summary["input"], "sheet": summary["sheet"], "table": summary["table"],
                "rows": summary["rows"], "mapped": summary["mapped"],
                "unmapped_columns": summary["unmapped_columns"], "missing_fields": summary["missing_fields"],
                "issues": summary["issues"],
            })


class _Row:
    """A row as row detectors see it."""

    __slots__ = ("number", "values")

    def __init__(self, number: int, values):
        self.number = number
        self.values = values

    def __repr__(self) -> str:
        return f"Row({self.number}, {self.values!r})"


def _no_label(number, cells):
    return None


def run(options, sink) -> int:
    """Run the engine over all inputs; raises EngineError (and MemoryError) on failure."""
    started = time.monotonic()
    sink.emit("run.phase.started", {"phase": "load_config"})
    config = config_module.load()
    print(f"configuration: {len(config.fields)} fields ({', '.join(f.name for f in config.fields)})")
    state = RunState(options, sink, config)
    try:
        return _run(state, started)
    except BaseException:
        state.outputs.abort()
        raise


def _run(state: RunState, started: float) -> int:
    config, context = state.config, state.context
    hook = config.hooks.get("on_run_start")
    if hook:
        usercode.call("hook on_run_start", hook, context)
    inputs = [InputRun(state, path).process() for path in state.options.inputs]
    summary = _summary(state, inputs, started)
    context.summary = summary
    hook = config.hooks.get("on_run_end")
    if hook:
        usercode.call("hook on_run_end", hook, context, summary)
    state.outputs.publish()
    issues = state.issues.counts()
    state.sink.emit("run.validation.summary", {**{k: issues[k] for k in ("errors", "warnings")},
                                               "issues": issues["total"], "by_field": issues["by_field"],
                                               "by_code": issues["by_code"], "summary": summary})
    print(f"{summary['tables']} tables, {summary['rows']} rows, {issues['errors']} errors, "
          f"{issues['warnings']} warnings; outputs: {', '.join(summary['outputs']) or 'none'}")
    return 0


def _summary(state: RunState, inputs: list[dict], started: float) -> dict:
    mode = "dry_run" if state.options.dry_run else ("validate_only" if state.options.validate_only else "run")
    return {
        "status": "succeeded",
        "mode": mode,
        "inputs": inputs,
        "tables": state.table_count,
        "rows": state.row_count,
        "table_details": state.tables,
        "issues": state.issues.counts(),
        "outputs": sorted(state.outputs.committed),
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
