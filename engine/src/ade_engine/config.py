"""Loading and checking the rules of the installed `ade_config` package.

The engine imports `ade_config` and reads these names, each first from the
package itself and then from its conventional module:

| name | module | what |
|---|---|---|
| `FIELDS` | `columns` | target fields, in output order (required) |
| `SETTINGS` | `columns` | engine settings for this configuration |
| `COLUMN_DETECTORS` | `columns` | functions that score a column for fields |
| `ROW_DETECTORS` | `rows` | functions that label a row header, data or skip |
| `VALIDATORS` | `validators` | functions that yield issues for a record |
| `on_*` hooks | `hooks` | per-run hooks (see HOOKS) |

A loaded Config is immutable and holds no per-run state, so one load can
serve many runs (the warm engine pool imports it once, then forks).
"""

import importlib
import sys

from . import usercode
from .errors import ConfigError
from .text import compact, tokens
from .transforms import BUILTIN
from .values import PARSERS

FIELD_KEYS = ("name", "label", "synonyms", "required", "type", "transforms", "unique", "description")
DEFAULT_SETTINGS = {
    "unmapped_columns": "keep",
    "mapping_threshold": 0.6,
    "max_issue_events": 100,
    "ambiguous_dates": "month_first",
    "outputs": ("xlsx", "csv"),
}
HOOKS = {
    "on_run_start": 1,
    "on_sheet_start": 2,
    "on_table_mapped": 2,
    "on_table_validated": 2,
    "on_run_end": 2,
}


class Field:
    """One target column of the output."""

    __slots__ = ("name", "label", "synonyms", "required", "type", "transforms", "unique",
                 "description", "variants", "index")

    def __repr__(self) -> str:
        return f"Field({self.name!r}, type={self.type!r})"


class Config:
    """Everything the engine reads from `ade_config`, checked and compiled."""

    def __init__(self, module, fields, settings, column_detectors, row_detectors, validators, hooks):
        self.module = module
        self.fields: list[Field] = fields
        self.by_name = {f.name: f for f in fields}
        self.settings: dict = settings
        self.column_detectors = column_detectors
        self.row_detectors = row_detectors
        self.validators = validators
        self.hooks: dict = hooks
        self.header_forms = _header_forms(fields)
        from .headers import HeaderScorer

        self.scorer = HeaderScorer(fields)


def _header_forms(fields: list[Field]) -> frozenset:
    """Lowercased spellings of every variant, for the cheap repeated-header check."""
    forms = set()
    for field in fields:
        for text in (field.name, field.label, *field.synonyms):
            forms.add(text.strip().lower())
            forms.add(" ".join(tokens(text)))
    forms.discard("")
    return frozenset(forms)


_cache: tuple[object, Config] | None = None


def load() -> Config:
    """Import `ade_config` and load its rules; reuses the last load while the module is the same."""
    global _cache
    module = _import_package()
    if _cache is not None and _cache[0] is module:
        return _cache[1]
    config = load_module(module)
    _cache = (module, config)
    return config


def _import_package():
    existing = sys.modules.get("ade_config")
    if existing is not None:
        return existing
    try:
        return importlib.import_module("ade_config")
    except ModuleNotFoundError as exc:
        if exc.name == "ade_config":
            raise ConfigError("no ade_config package is installed in this environment") from exc
        raise usercode.wrap(exc, "importing ade_config") from exc
    except MemoryError:
        raise
    except (Exception, SystemExit) as exc:
        raise usercode.wrap(exc, "importing ade_config") from exc


def _lookup(package, name: str, module_name: str):
    """`name` from the package, else from `ade_config.<module_name>`; (value, module) or (None, None)."""
    if hasattr(package, name):
        return getattr(package, name), package
    module = _submodule(package, module_name)
    if module is None:
        return None, None
    return getattr(module, name, None), module


def _submodule(package, module_name: str):
    """`ade_config.<module_name>` imported, or None when the package has no such module."""
    if not hasattr(package, "__path__"):
        return None
    qualified = f"{package.__name__}.{module_name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name == qualified:
            return None
        raise usercode.wrap(exc, f"importing {qualified}") from exc
    except MemoryError:
        raise
    except (Exception, SystemExit) as exc:
        raise usercode.wrap(exc, f"importing {qualified}") from exc


def _fail(message: str, module, name: str | None = None) -> ConfigError:
    """A ConfigError pointing at the module (and the line assigning `name`, when found)."""
    file = getattr(module, "__file__", None)
    line = _line_of(file, name) if file and name else None
    where = f" ({file}, line {line})" if line else (f" ({file})" if file else "")
    return ConfigError(f"{message}{where}", file=file, line=line)


def _line_of(file: str, name: str) -> int | None:
    try:
        with open(file, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if line.startswith(name):
                    return number
    except OSError:
        return None
    return None


def load_module(package) -> Config:
    """Read and check every rule of an imported `ade_config` package."""
    raw_fields, fields_module = _lookup(package, "FIELDS", "columns")
    if raw_fields is None:
        raise _fail("ade_config defines no FIELDS (in ade_config/columns.py or ade_config/__init__.py)", package)
    fields = usercode.call("reading FIELDS", parse_fields, raw_fields, fields_module)
    raw_settings, settings_module = _lookup(package, "SETTINGS", "columns")
    settings = parse_settings(raw_settings, settings_module)
    column_detectors = _functions(package, "COLUMN_DETECTORS", "columns", 1)
    row_detectors = _functions(package, "ROW_DETECTORS", "rows", 1)
    validators = _functions(package, "VALIDATORS", "validators", (1, 2))
    hooks = _hooks(package)
    return Config(package, fields, settings, column_detectors, row_detectors, validators, hooks)


def parse_fields(raw, module) -> list[Field]:
    """Check FIELDS (a non-empty list of dicts) and turn it into Field objects."""
    if isinstance(raw, (str, bytes, dict)) or not hasattr(raw, "__iter__"):
        raise _fail("FIELDS must be a list of dicts", module, "FIELDS")
    items = list(raw)
    if not items:
        raise _fail("FIELDS is empty: list at least one field", module, "FIELDS")
    fields, seen = [], set()
    for index, item in enumerate(items):
        field = _parse_field(index, item, module)
        if field.name in seen:
            raise _fail(f"FIELDS has two fields named {field.name!r}", module, "FIELDS")
        seen.add(field.name)
        field.index = len(fields)
        fields.append(field)
    return fields


def _parse_field(index: int, item, module) -> Field:
    where = f"FIELDS[{index}]"
    if not isinstance(item, dict):
        raise _fail(f"{where} must be a dict, not {type(item).__name__}", module, "FIELDS")
    unknown = [k for k in item if k not in FIELD_KEYS]
    if unknown:
        raise _fail(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(FIELD_KEYS)})", module, "FIELDS")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        raise _fail(f"{where} needs a 'name': a non-empty string", module, "FIELDS")
    where = f"{where} ({name})"
    field = Field()
    field.name = name.strip()
    field.label = _string(item.get("label", field.name), f"{where}: 'label'", module) or field.name
    field.synonyms = _strings(item.get("synonyms", []), f"{where}: 'synonyms'", module)
    field.description = _string(item.get("description", ""), f"{where}: 'description'", module)
    field.required = _boolean(item.get("required", False), f"{where}: 'required'", module)
    field.unique = _boolean(item.get("unique", False), f"{where}: 'unique'", module)
    field.type = item.get("type", "string")
    if field.type not in PARSERS:
        raise _fail(f"{where}: unknown type {field.type!r} (known: {', '.join(PARSERS)})", module, "FIELDS")
    field.transforms = _transforms(item.get("transforms", []), where, module)
    variants = []
    for text in (field.name.replace("_", " "), field.label, *field.synonyms):
        words = tokens(text)
        if words and words not in variants:
            variants.append(words)
    field.variants = tuple(variants)
    return field


def _string(value, what: str, module) -> str:
    if not isinstance(value, str):
        raise _fail(f"{what} must be a string", module, "FIELDS")
    return value.strip()


def _strings(value, what: str, module) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail(f"{what} must be a list of strings", module, "FIELDS")
    return [_string(v, what, module) for v in value]


def _boolean(value, what: str, module) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"{what} must be True or False", module, "FIELDS")
    return value


def _transforms(value, where: str, module) -> tuple:
    if isinstance(value, str) or callable(value) or not isinstance(value, (list, tuple)):
        raise _fail(f"{where}: 'transforms' must be a list of names or functions", module, "FIELDS")
    out = []
    for item in value:
        if isinstance(item, str):
            if item not in BUILTIN:
                raise _fail(f"{where}: unknown transform {item!r} (built in: {', '.join(BUILTIN)})",
                            module, "FIELDS")
            out.append((item, BUILTIN[item], False))
        elif callable(item):
            _check_arity(item, 1, f"{where}: transform", module)
            out.append((usercode.describe(item), item, True))
        else:
            raise _fail(f"{where}: a transform must be a name or a function, not {type(item).__name__}",
                        module, "FIELDS")
    return tuple(out)


def _check_arity(function, expected, what: str, module) -> None:
    code = getattr(function, "__code__", None)
    if code is None:
        return
    allowed = expected if isinstance(expected, tuple) else (expected,)
    positional = code.co_argcount - (1 if hasattr(function, "__self__") else 0)
    defaults = len(getattr(function, "__defaults__", None) or ())
    if not any(positional - defaults <= n <= positional for n in allowed) and not code.co_flags & 0x04:
        names = " or ".join(str(n) for n in allowed)
        raise _fail(f"{what} {usercode.describe(function)} must take {names} argument(s)", module)


def parse_settings(raw, module) -> dict:
    """SETTINGS merged over the defaults, each value checked."""
    settings = dict(DEFAULT_SETTINGS)
    if raw is None:
        return settings
    if not isinstance(raw, dict):
        raise _fail("SETTINGS must be a dict", module, "SETTINGS")
    for key, value in raw.items():
        if key not in DEFAULT_SETTINGS:
            raise _fail(f"SETTINGS: unknown setting {key!r} (known: {', '.join(DEFAULT_SETTINGS)})",
                        module, "SETTINGS")
        settings[key] = _setting(key, value, module)
    return settings


def _setting(key: str, value, module):
    choices = {"unmapped_columns": ("keep", "drop"), "ambiguous_dates": ("month_first", "day_first")}
    if key in choices and value not in choices[key]:
        raise _fail(f"SETTINGS[{key!r}] must be one of {', '.join(choices[key])}", module, "SETTINGS")
    if key == "mapping_threshold" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value <= 1):
        raise _fail("SETTINGS['mapping_threshold'] must be a number in (0, 1]", module, "SETTINGS")
    if key == "max_issue_events" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise _fail("SETTINGS['max_issue_events'] must be a whole number >= 0", module, "SETTINGS")
    if key == "outputs":
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                any(v not in ("xlsx", "csv") for v in value):
            raise _fail("SETTINGS['outputs'] must be a list of 'xlsx' and/or 'csv'", module, "SETTINGS")
        return tuple(value)
    return value


def _functions(package, name: str, module_name: str, arity) -> tuple:
    raw, module = _lookup(package, name, module_name)
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes, dict)) or not isinstance(raw, (list, tuple)):
        raise _fail(f"{name} must be a list of functions", module, name)
    out = []
    for item in raw:
        if not callable(item):
            raise _fail(f"{name} holds {item!r}, which is not a function", module, name)
        _check_arity(item, arity, f"{name}:", module)
        out.append((usercode.describe(item), item))
    return tuple(out)


def _hooks(package) -> dict:
    hooks = {name: getattr(package, name) for name in HOOKS if callable(getattr(package, name, None))}
    module = _submodule(package, "hooks")
    if module is not None:
        for attr in dir(module):
            if not attr.startswith("on_") or not callable(getattr(module, attr)):
                continue
            if attr not in HOOKS:
                hint = _closest(attr, HOOKS)
                raise _fail(f"unknown hook {attr}" + (f" (did you mean {hint}?)" if hint else "")
                            + f"; hooks are {', '.join(HOOKS)}", module, f"def {attr}")
            hooks.setdefault(attr, getattr(module, attr))
    for name, function in hooks.items():
        _check_arity(function, HOOKS[name], f"hook {name}:", module or package)
    return hooks


def _closest(name: str, candidates) -> str | None:
    from .text import edit_distance

    best = min(candidates, key=lambda c: edit_distance(name, c, 99))
    return best if edit_distance(name, best, 99) <= 4 else None
