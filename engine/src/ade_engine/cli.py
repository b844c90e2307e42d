"""Command line of the engine: `python -m ade_engine run ...` and `--version`."""

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import EngineError
from .events import open_sink
from .runner import run


class _Parser(argparse.ArgumentParser):
    """Argument parser that exits with status 1 on usage errors."""

    def error(self, message: str):
        """Print usage and the error on stderr, then exit 1."""
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for the engine command line."""
    parser = _Parser(prog="ade_engine", description="ADE engine: normalize messy tables.")
    parser.add_argument("--version", action="version", version=f"ade-engine {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = commands.add_parser("run", help="normalize one or more input files")
    run_parser.add_argument("--input", action="append", required=True, metavar="FILE",
                            help="input file (repeatable)")
    run_parser.add_argument("--output-dir", required=True, metavar="DIR",
                            help="directory that receives the outputs")
    run_parser.add_argument("--input-sheet", action="append", default=[], metavar="NAME",
                            help="sheet to read (repeatable; ignored for CSV)")
    run_parser.add_argument("--dry-run", action="store_true",
                            help="do everything except writing outputs")
    run_parser.add_argument("--validate-only", action="store_true",
                            help="detect, map and validate without writing outputs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, open the event sink and run; return the process exit code."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    args = build_parser().parse_args(argv)
    try:
        sink = open_sink()
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    try:
        return run(args, sink)
    finally:
        sink.close()
