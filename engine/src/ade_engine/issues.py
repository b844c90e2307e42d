"""Validation issues: counted, emitted as `run.validation.issue` up to a cap, and
kept for the output's Issues sheet. Issues never fail a run.
"""

VALUE_LIMIT = 200

ISSUE_COLUMNS = ("sheet", "table", "row", "column", "cell", "field", "value", "severity", "code", "message")


def shown(value) -> str | None:
    """A value as shown in an issue: text, cut to VALUE_LIMIT characters."""
    if value is None:
        return None
    from .values import text_of

    text = text_of(value)
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT] + "…"


class IssueLog:
    """All issues of a run: counts by severity, field and code; events up to `limit`."""

    def __init__(self, sink, limit: int):
        self.sink = sink
        self.limit = limit
        self.total = 0
        self.errors = 0
        self.warnings = 0
        self.by_field: dict[str, int] = {}
        self.by_code: dict[str, int] = {}
        self.emitted = 0
        self.keep = None  # callable receiving each issue (the current input's Issues sheet)

    def add(self, issue: dict) -> None:
        """Record one issue: {input, sheet, table, row, column, cell, field, value, severity, code, message}."""
        self.total += 1
        if issue["severity"] == "error":
            self.errors += 1
        else:
            self.warnings += 1
        field = issue.get("field")
        if field:
            self.by_field[field] = self.by_field.get(field, 0) + 1
        code = issue["code"]
        self.by_code[code] = self.by_code.get(code, 0) + 1
        if self.emitted < self.limit:
            self.emitted += 1
            self.sink.emit("run.validation.issue", issue)
        if self.keep is not None:
            self.keep(issue)

    def counts(self) -> dict:
        """Totals for summaries."""
        return {
            "total": self.total,
            "errors": self.errors,
            "warnings": self.warnings,
            "by_field": dict(sorted(self.by_field.items())),
            "by_code": dict(sorted(self.by_code.items())),
            "events_emitted": self.emitted,
            "events_not_emitted": self.total - self.emitted,
        }


def make(input_name, sheet, table, row, column, cell, field, value, severity, code, message) -> dict:
    """An issue dict with every key present."""
    return {"input": input_name, "sheet": sheet, "table": table, "row": row, "column": column,
            "cell": cell, "field": field, "value": shown(value), "severity": severity, "code": code,
            "message": message}
