"""Telling a workbook from delimited text by its first bytes."""

from ..errors import InputError

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BINARY_MAGIC = {
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
}


def sniff(head: bytes, name: str) -> str:
    """`xlsx` (a zip) or `text`; other known formats are refused with a clear message."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "xlsx"
    if head.startswith(_OLE2):
        raise InputError(
            f"{name} is an Excel 97-2003 workbook (.xls) or an encrypted workbook, which this "
            "engine cannot read: save it as .xlsx or .csv", name)
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            raise InputError(f"{name} is {what}, not a spreadsheet", name)
    return "text"
