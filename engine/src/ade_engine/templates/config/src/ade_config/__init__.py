"""ADE configuration: the rules the engine applies to a member roster.

The engine reads FIELDS, SETTINGS and COLUMN_DETECTORS from `columns`,
ROW_DETECTORS from `rows`, VALIDATORS from `validators` and the `on_*`
hooks from `hooks`. Importing them here lets a build check them all.
"""

from . import columns, hooks, rows, validators

__all__ = ["columns", "hooks", "rows", "validators"]
