"""The engine's command line (SPEC §9) and `main(argv)`, which runs one invocation in-process.

    python -m ade_engine run --input FILE [--input FILE ...] --output-dir DIR
                             [--input-sheet NAME ...] [--dry-run] [--validate-only]
    python -m ade_engine config init DIR
    python -m ade_engine config validate [DIR]
    python -m ade_engine --version

No argparse: it costs start-up time, and this grammar is small.
"""

import os
import sys

from . import __version__
from .errors import EngineError, FileSizeLimit, UsageError, is_file_too_large
from .events import MEMORY_ERROR_EVENT, MEMORY_ERROR_LINE, EventSink, open_sink

USAGE = """\
usage: python -m ade_engine run --input FILE [--input FILE ...] --output-dir DIR
                                [--input-sheet NAME ...] [--dry-run] [--validate-only]
       python -m ade_engine config init DIR
       python -m ade_engine config validate [DIR]
       python -m ade_engine --version
"""


class RunOptions:
    """Arguments of `run`."""

    def __init__(self):
        self.inputs: list[str] = []
        self.output_dir: str | None = None
        self.input_sheets: list[str] = []
        self.dry_run = False
        self.validate_only = False


def parse_run(args: list[str]) -> RunOptions:
    """Parse the arguments after `run`; UsageError on anything unexpected."""
    options = RunOptions()
    values = {"--input": options.inputs, "--input-sheet": options.input_sheets}
    position = 0
    while position < len(args):
        arg = args[position]
        name, eq, inline = arg.partition("=")
        if name in ("--dry-run", "--validate-only") and not eq:
            setattr(options, name[2:].replace("-", "_"), True)
        elif name in ("--input", "--input-sheet", "--output-dir"):
            if eq:
                value = inline
            else:
                position += 1
                if position >= len(args):
                    raise UsageError(f"{name} needs a value")
                value = args[position]
            if name == "--output-dir":
                if options.output_dir is not None:
                    raise UsageError("--output-dir given twice")
                options.output_dir = value
            else:
                values[name].append(value)
        else:
            raise UsageError(f"unexpected argument {arg[:100]!r}")
        position += 1
    if not options.inputs:
        raise UsageError("at least one --input is required")
    if options.output_dir is None:
        raise UsageError("--output-dir is required")
    return options


def _line_buffered() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(line_buffering=True)
            except (ValueError, OSError):
                pass


def main(argv: list[str] | None = None) -> int:
    """Run one engine invocation in this process; return its exit code (0 success, 1 failure)."""
    args = sys.argv[1:] if argv is None else list(argv)
    _line_buffered()
    if args in (["--version"], ["-V"]):
        print(f"ade-engine {__version__}")
        return 0
    if not args or args[0] in ("-h", "--help", "help"):
        (sys.stdout if args else sys.stderr).write(USAGE)
        return 0 if args else 1
    if args[0] == "config":
        from .scaffold import config_command

        return config_command(args[1:])
    if args[0] != "run":
        sys.stderr.write(f"error: unknown command {args[0][:100]!r}\n{USAGE}")
        return 1
    try:
        sink = open_sink()
    except UsageError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    try:
        return _run(args[1:], sink)
    finally:
        _flush()
        sink.close()


def _run(args: list[str], sink: EventSink) -> int:
    out_of_memory = False
    try:
        from . import runner

        return runner.run(parse_run(args), sink)
    except MemoryError:
        out_of_memory = True
    except EngineError as exc:
        return fail(sink, exc)
    except Exception as exc:
        if is_file_too_large(exc):
            return fail(sink, FileSizeLimit("an output file exceeded the run's file-size limit"))
        import traceback

        traceback.print_exc()
        return fail(sink, EngineError(f"internal error: {type(exc).__name__}: {exc}"))
    if out_of_memory:
        # Outside the except clause, so the failed frames are already freed.
        _write_raw(2, MEMORY_ERROR_LINE)
        sink.write(MEMORY_ERROR_EVENT)
    return 1


def fail(sink: EventSink, exc: EngineError) -> int:
    """Report a failure on stderr and as `run.error`; return exit code 1."""
    if exc.code == "config_error" and exc.__cause__ is not None:
        import traceback

        traceback.print_exception(exc.__cause__, file=sys.stderr)
    print(f"error: {exc.message}", file=sys.stderr)
    sink.emit("run.error", exc.payload())
    return 1


def _write_raw(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:
        pass


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, MemoryError):
            pass
