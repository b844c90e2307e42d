"""Calling into the configuration's code: any exception becomes a ConfigError naming
the configuration's file and line, so a broken rule reads as a broken rule.

MemoryError and EFBIG pass through untouched: they are limits of the run,
not bugs of the configuration.
"""

import os
import sys

from .errors import ConfigError, EngineError, is_file_too_large

_engine_dir = os.path.dirname(os.path.abspath(__file__))


def user_frame(tb) -> tuple[str | None, int | None]:
    """File and line of the innermost frame in the configuration package, else outside the engine."""
    config_dir = _config_dir()
    in_config: tuple[str | None, int | None] = (None, None)
    outside: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if config_dir and filename.startswith(config_dir):
            in_config = (filename, tb.tb_lineno)
        elif not filename.startswith(_engine_dir + os.sep) and not _is_stdlib(filename):
            outside = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return in_config if in_config[0] else outside


def _config_dir() -> str | None:
    module = sys.modules.get("ade_config")
    path = getattr(module, "__file__", None)
    return os.path.dirname(os.path.abspath(path)) + os.sep if path else None


def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<"):
        return True
    return filename.startswith(sys.base_prefix + os.sep) and "site-packages" not in filename


def wrap(exc: BaseException, what: str) -> ConfigError:
    """A ConfigError for an exception raised by configuration code while doing `what`."""
    file, line = user_frame(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        file, line = exc.filename, exc.lineno
    where = f" ({file}, line {line})" if file else ""
    if isinstance(exc, SystemExit):
        detail = f"called sys.exit({exc.code!r})"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return ConfigError(f"{what} failed{where}: {detail}", file=file, line=line)


def call(what: str, function, *args):
    """Call configuration code; its exceptions become ConfigError (limits pass through)."""
    try:
        return function(*args)
    except (MemoryError, EngineError):
        raise
    except (Exception, SystemExit) as exc:
        if is_file_too_large(exc):
            raise
        raise wrap(exc, what) from exc


def describe(function) -> str:
    """`name (file:line)` of a configuration function, for messages."""
    code = getattr(function, "__code__", None)
    name = getattr(function, "__qualname__", None) or repr(function)
    if code is None:
        return name
    return f"{name} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
