"""Reading inputs: the content decides the reader, the file name only hints.

`open_input(path)` returns a Source: its sheets, each yielding numbered rows
of cell values (strings from delimited text; typed values from workbooks).
"""

import os

from ..errors import InputError
from .sniff import sniff


def open_input(path: str, sheet_names: list[str]):
    """A Source for the file at `path`: a workbook or delimited text, whatever its extension."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192)
    except FileNotFoundError:
        raise InputError(f"input not found: {name}", name) from None
    except IsADirectoryError:
        raise InputError(f"input is a directory, not a file: {name}", name) from None
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}", name) from None
    kind = sniff(head, name)
    if kind == "xlsx":
        from .workbook import WorkbookSource

        return WorkbookSource(path, name, sheet_names)
    from .delimited import DelimitedSource

    return DelimitedSource(path, name)
