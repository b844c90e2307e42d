"""Smoke tests of a configuration's functions, run by `config validate`.

Each column detector, row detector, custom transform and validator is
called once on made-up input shaped like a real one; whatever raises or
returns the wrong kind of thing is reported with its file and line.
Hooks are not called: they may have side effects.
"""

import datetime

from . import usercode
from .errors import EngineError
from .mapping import Column
from .runner import _Row
from .table import _arity

_SAMPLES = {
    "string": "Ada", "id": "1001", "email": "ada@example.org", "phone": "555-0101",
    "date": datetime.date(2020, 1, 31), "number": 12.5, "integer": 12, "boolean": True,
}


class _SmokeRow:
    """Stands in for the RowContext of a two-argument validator (an empty run state)."""

    def __init__(self, config):
        from .context import RunContext

        self.row = 1
        self.table = None
        self.run = RunContext(["sample.csv"], "out", True, False, [], config.settings, config.fields)


def smoke_test(config) -> list[str]:
    """Problems found, as messages (empty when every rule behaves)."""
    problems: list[str] = []
    record = {f.name: _SAMPLES[f.type] for f in config.fields}
    column = Column(0, config.fields[0].label, ["1001", "1002", "1003"], "sample.csv", None)
    row = _Row(1, [f.label for f in config.fields])
    for name, detector in config.column_detectors:
        _check(problems, f"column detector {name}", detector, (column,),
               lambda r: r is None or (isinstance(r, dict) and all(k in config.by_name for k in r)),
               "return None or a dict of field name → number")
    for name, detector in config.row_detectors:
        _check(problems, f"row detector {name}", detector, (row,),
               lambda r: r in (None, "header", "data", "skip"), "return 'header', 'data', 'skip' or None")
    for field in config.fields:
        for name, transform, user in field.transforms:
            if user:
                _check(problems, f"transform {name} of {field.name}", transform, ("Sample Text",),
                       lambda r: True, "")
    for name, validator in config.validators:
        args = (record,) if _arity(validator) == 1 else (record, _SmokeRow(config))
        _check(problems, f"validator {name}", lambda *a, v=validator: list(v(*a) or ()), args,
               lambda r: all(isinstance(i, (str, dict)) for i in r), "yield message strings or dicts")
    return problems


def _check(problems, what, function, args, valid, expected) -> None:
    try:
        result = usercode.call(what, function, *args)
    except EngineError as exc:
        problems.append(exc.message)
        return
    except ValueError:
        return
    if not valid(result):
        problems.append(f"{what} returned {result!r}: {expected}")
