"""One table: map its columns, let hooks adjust, then normalize, validate and write its rows."""

from itertools import chain, islice

from . import usercode
from .context import RowContext, TableContext
from .convert import pipeline
from .errors import ConfigError
from .mapping import choose_date_order, letter, map_columns
from .values import Invalid, text_of

SAMPLE_ROWS = 100
UNIQUE_LIMIT = 1_000_000


class Plan:
    """How each output column is filled: a field (column, pipeline) or a kept unmapped column."""

    def __init__(self, fields, assigned, columns, config):
        self.fields = []
        for field in fields:
            index = assigned.get(field.name)
            column = columns[index] if index is not None else None
            order = choose_date_order(config, column) if column is not None and field.type == "date" else "MDY"
            self.fields.append((field, index, pipeline(field, order),
                                column.header if column else None, column.letter if column else None))
        taken = set(i for i in assigned.values() if i is not None)
        keep = config.settings["unmapped_columns"] == "keep"
        self.kept = [c for c in columns if keep and c.index not in taken and (c.header or c.values)]
        self.header = [f.name for f in fields] + _unique_names([c.header or f"column_{c.letter}"
                                                                for c in self.kept], set(f.name for f in fields))


def _unique_names(names: list[str], taken: set[str]) -> list[str]:
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name} ({n})"
        taken.add(candidate)
        out.append(candidate)
    return out


def _checked_mapping(mapping, config, width: int) -> dict:
    """The mapping after hooks, checked: field names to column indexes or None."""
    if not isinstance(mapping, dict):
        raise ConfigError("on_table_mapped left table.mapping as something other than a dict")
    out = {}
    used = {}
    for name, index in mapping.items():
        if name not in config.by_name:
            raise ConfigError(f"table.mapping names {name!r}, which is not a field")
        if index is None:
            continue
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < width:
            raise ConfigError(f"table.mapping[{name!r}] = {index!r} is not a column index (0..{width - 1})")
        if index in used:
            raise ConfigError(f"table.mapping gives column {letter(index)} to both {used[index]} and {name}")
        used[index] = name
        out[name] = index
    return out


def _column_summaries(mapping, assigned, config) -> list[dict]:
    by_column = {index: name for name, index in assigned.items()}
    out = []
    for column in mapping.columns[:200]:
        name = by_column.get(column.index)
        if name is not None:
            field = config.by_name[name]
        else:
            field = max(config.fields, key=lambda f: mapping.scores[f.index][column.index])
        header_score, value_share = mapping.details[field.index][column.index]
        entry = {"index": column.index, "letter": column.letter, "header": column.header,
                 "field": name, "score": mapping.scores[field.index][column.index],
                 "header_score": round(header_score, 4), "value_score": round(value_share, 4)}
        if name is None:
            entry["best_field"] = field.name
        out.append(entry)
    return out


class TableRun:
    """Processes one table of a sheet for an InputRun (see inputs.py)."""

    def __init__(self, job, sheet_ctx, sheet, scanner, header, number: int):
        self.job = job
        self.config = job.config
        self.sheet_ctx = sheet_ctx
        self.sheet = sheet
        self.scanner = scanner
        self.header = header
        self.number = number
        self.errors = 0
        self.warnings = 0
        self.first_row = None
        self.last_row = None

    def run(self, skipped_before: dict) -> dict:
        """Map, normalize, validate and write the table; return its summary.

        `skipped_before`: the scanner's skip counts before this table's header was searched.
        """
        job, config = self.job, self.config
        rows = self.scanner.rows(self.header, wide=self.header.matched >= 3)
        sample = list(islice(rows, SAMPLE_ROWS))
        mapping = map_columns(config, job.scorer, self.header.cells, sample, job.input_name, self.sheet.name)
        table = TableContext(job.run_ctx, self.sheet_ctx, self.number, self.header.rows, self.header.cells,
                             mapping.columns, {f.name: mapping.assigned.get(f.name) for f in config.fields},
                             self._scores(mapping))
        hook = config.hooks.get("on_table_mapped")
        if hook:
            usercode.call("hook on_table_mapped", hook, job.run_ctx, table)
        assigned = _checked_mapping(table.mapping, config, len(mapping.columns))
        self._report_mapping(mapping, assigned)
        plan = Plan(config.fields, assigned, mapping.columns, config)
        outputs = job.open_table(self.number, plan.header)
        count = self._rows(chain(sample, rows), plan, table, outputs)
        names = job.close_table(outputs)
        table.rows = count
        table.issues = {"errors": self.errors, "warnings": self.warnings}
        hook = config.hooks.get("on_table_validated")
        if hook:
            usercode.call("hook on_table_validated", hook, job.run_ctx, table)
        skipped = {k: v - skipped_before.get(k, 0) for k, v in self.scanner.skipped.items()}
        return self._summary(mapping, assigned, count, skipped, names)

    def _scores(self, mapping) -> dict:
        out = {}
        for field in self.config.fields:
            ranked = sorted(((mapping.scores[field.index][c.index], c) for c in mapping.columns),
                            key=lambda pair: -pair[0])[:3]
            out[field.name] = {c.header or c.letter: s for s, c in ranked if s > 0}
        return out

    def _issue(self, row, column, cell, field, value, severity, code, message) -> None:
        if severity == "error":
            self.errors += 1
        else:
            self.warnings += 1
        self.job.issue(self.sheet.name, self.number, row, column, cell, field, value, severity, code, message)

    def _report_mapping(self, mapping, assigned) -> None:
        job = self.job
        where = f"sheet {self.sheet.name!r}, " if self.sheet.name is not None else ""
        rows = "-".join(str(r) for r in self.header.rows)
        job.say(f"table {self.number} ({where}header on row {rows}):")
        for field in self.config.fields:
            index = assigned.get(field.name)
            if index is None:
                continue
            column = mapping.columns[index]
            job.say(f"  {column.header or column.letter!r} -> {field.name} "
                    f"({mapping.scores[field.index][index]:.2f})")
        for tie in mapping.ties:
            job.say(f"  tie for {tie['field']}: {tie['chosen']!r} ({tie['chosen_score']:.2f}) "
                    f"over {tie['rival']!r} ({tie['rival_score']:.2f})")
        for field in self.config.fields:
            if field.name in assigned:
                continue
            if field.required:
                self._issue(None, None, None, field.name, None, "error", "missing_required_field",
                            f"no column for required field {field.name} ({field.label})")
                job.say(f"  missing required field {field.name}")
            else:
                job.say(f"  no column for {field.name}")

    def _rows(self, rows, plan, table, outputs) -> int:
        """The hot loop: one pass over the data rows, a list comprehension per row."""
        job = self.job
        csv_write, sheet_write = outputs.csv_write, outputs.sheet_write
        validators = [(name, fn, _arity(fn) == 2) for name, fn in self.config.validators]
        columns = {f.name: (header, col_letter) for f, _, _, header, col_letter in plan.fields}
        names = [f.name for f, *_ in plan.fields]
        row_ctx = RowContext(table)
        kept = [c.index for c in plan.kept]
        # Unmapped fields read column 0 (every row has one) through a pipeline that yields None.
        pairs = [(index if index is not None else 0, convert if index is not None else _none)
                 for _, index, convert, _, _ in plan.fields]
        # The pipelines' caches, read inline: most cells repeat (names, dates), and a call costs.
        lookups = [(index, convert.cache.get, convert) for index, convert in pairs]
        required = [p for p, (f, index, *_) in enumerate(plan.fields) if f.required and index is not None]
        uniques = [(p, {}) for p, (f, index, *_) in enumerate(plan.fields) if f.unique and index is not None]
        needs_format = job.typed_cells or any(f.type in ("number", "integer", "boolean")
                                              for f, *_ in plan.fields)
        count = 0
        first = None
        for number, cells in rows:
            width = len(cells)
            out = [None if index >= width else hit if (hit := get(cells[index])) is not None
                   else convert(cells[index]) for index, get, convert in lookups]
            if required and None in out:
                self._missing(out, required, names, columns, number)
            if _INVALID in map(type, out):
                self._invalid(out, cells, pairs, names, columns, number)
            for position, seen in uniques:
                value = out[position]
                if value is not None and type(value) is not Invalid:
                    key = value if type(value) is not str else value.casefold()
                    if key in seen:
                        self._duplicate(seen[key], value, number, names[position], columns)
                    elif len(seen) < UNIQUE_LIMIT:
                        seen[key] = number
            if validators:
                row_ctx.row = number
                self._validate(validators, dict(zip(names, out)), row_ctx, columns, number)
            if kept:
                out.extend([(cells[i].strip() if type(cells[i]) is str else cells[i]) if i < width else None
                            for i in kept])
            if csv_write is not None:
                csv_write([_csv_text(v) for v in out] if needs_format else out)
            if sheet_write is not None and not sheet_write(out):
                sheet_write = outputs.sheet_full(self.sheet.name, self.number, number)
            count += 1
            if not count & 2047:
                job.progress(self.sheet, count)
            if first is None:
                first = number
        if count:
            self.first_row, self.last_row = first, number
        return count

    def _missing(self, out, required, names, columns, number) -> None:
        for position in required:
            if out[position] is None:
                name = names[position]
                header, col_letter = columns[name]
                self._issue(number, header, f"{col_letter}{number}", name, None, "error", "missing_value",
                            f"{name} is required but empty")

    def _invalid(self, out, cells, pairs, names, columns, number) -> None:
        """Report rejected values and keep their original text in the output."""
        for position, value in enumerate(out):
            if type(value) is not Invalid:
                continue
            raw = cells[pairs[position][0]]
            name = names[position]
            header, col_letter = columns[name]
            self._issue(number, header, f"{col_letter}{number}", name, raw, "error",
                        f"invalid_{self.job.types[name]}", f"{value.message}: {text_of(raw)[:80]!r}")
            out[position] = text_of(raw)

    def _duplicate(self, first: int, value, number: int, name: str, columns: dict) -> None:
        header, col_letter = columns[name]
        self._issue(number, header, f"{col_letter}{number}", name, value, "error", "duplicate_value",
                    f"{name} {text_of(value)[:80]!r} already appears on row {first}")

    def _validate(self, validators, record: dict, row_ctx, columns, number: int) -> None:
        for name, validator, with_row in validators:
            try:
                result = validator(record, row_ctx) if with_row else validator(record)
                if result is None:
                    continue
                found = [result] if isinstance(result, (str, dict)) else list(result)
            except MemoryError:
                raise
            except (Exception, SystemExit) as exc:
                raise usercode.wrap(exc, f"validator {name}") from exc
            for item in found:
                self._custom_issue(name, item, record, columns, number)

    def _custom_issue(self, name, item, record, columns, number) -> None:
        if isinstance(item, str):
            item = {"message": item}
        if not isinstance(item, dict) or not isinstance(item.get("message"), str):
            raise ConfigError(f"validator {name} yielded {item!r}; yield a message string or a dict "
                              "with 'message' (and optional 'field', 'code', 'severity')")
        field = item.get("field")
        if field is not None and field not in record:
            raise ConfigError(f"validator {name} yielded an issue for {field!r}, which is not a field")
        severity = item.get("severity", "error")
        if severity not in ("error", "warning"):
            raise ConfigError(f"validator {name} yielded severity {severity!r}; use 'error' or 'warning'")
        header, col_letter = columns.get(field, (None, None)) if field else (None, None)
        cell = f"{col_letter}{number}" if col_letter else None
        self._issue(number, header, cell, field, record.get(field) if field else None, severity,
                    str(item.get("code", "validation")), item["message"])

    def _summary(self, mapping, assigned, count, skipped, names) -> dict:
        config = self.config
        return {
            "input": self.job.input_name,
            "sheet": self.sheet.name,
            "table": self.number,
            "header_row": self.header.rows[-1],
            "header_rows": self.header.rows,
            "first_row": self.first_row,
            "last_row": self.last_row,
            "rows": count,
            "columns": _column_summaries(mapping, assigned, config),
            "mapped": {name: {"column": mapping.columns[i].header, "letter": mapping.columns[i].letter,
                              "score": mapping.scores[config.by_name[name].index][i]}
                       for name, i in assigned.items()},
            "unmapped_columns": [c.header or c.letter for c in mapping.columns
                                 if c.index not in set(assigned.values()) and (c.header or c.values)],
            "missing_fields": [f.name for f in config.fields if f.name not in assigned],
            "ties": mapping.ties,
            "low_scores": mapping.low,
            "skipped_rows": skipped,
            "issues": {"errors": self.errors, "warnings": self.warnings},
            "outputs": names,
        }


_INVALID = Invalid


def _none(value):
    return None


_none.cache = {}


def _arity(function) -> int:
    code = getattr(function, "__code__", None)
    if code is None:
        return 1
    return code.co_argcount - (1 if hasattr(function, "__self__") else 0)


def _csv_text(value):
    kind = type(value)
    if kind is str or value is None:
        return value
    return text_of(value)
