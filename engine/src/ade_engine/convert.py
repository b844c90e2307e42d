"""Per-column value pipelines: trim, the field's transforms, then its type's parser.

A pipeline returns None for an empty cell, an `Invalid` for a value its type
rejects (the caller turns it into an issue and keeps the original text), or
the normalized value. Results for repeated text are cached per column.
"""

from . import usercode
from .values import PARSERS, Invalid, parse_date

_CACHE_LIMIT = 8192  # per column: names and dates repeat; unique values would only cost memory


def _user_transform(name: str, function):
    def run(value):
        try:
            return function(value)
        except ValueError as exc:
            return Invalid(str(exc) or "rejected by a transform")
        except MemoryError:
            raise
        except (Exception, SystemExit) as exc:
            raise usercode.wrap(exc, f"transform {name}") from exc
    return run


def pipeline(field, order: str = "MDY"):
    """The function that normalizes one cell of `field`'s column (its `.cache` maps text to results)."""
    parser = PARSERS[field.type]
    if field.type == "date":
        def parser(value, _order=order):
            return parse_date(value, _order)
    steps = [(_user_transform(name, fn) if user else fn) for name, fn, user in field.transforms]
    cacheable = not any(user for _, _, user in field.transforms)
    cache: dict = {}

    def convert(value):
        if value is None:
            return None
        if type(value) is str:
            hit = cache.get(value)
            if hit is not None:
                return hit
            key = value
            value = value.strip()
            if not value:
                return None
        else:
            key = None
        for step in steps:
            value = step(value)
            if value is None or type(value) is Invalid:
                return value
            if type(value) is str and not value.strip():
                return None
        result = parser(value)
        if key is not None and cacheable and len(cache) < _CACHE_LIMIT:
            cache[key] = result
        return result

    convert.cache = cache
    return convert
