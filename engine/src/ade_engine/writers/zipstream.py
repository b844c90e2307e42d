"""A minimal streaming zip writer (deflate, data descriptors, no zip64).

`zipfile` costs more start-up time than a small run; an XLSX needs only this.
Entries are written one after another and never held in memory.
"""

import zlib

MAX_ENTRY = 0xFFFFFFFF - (1 << 26)  # stay clear of the 4 GiB limit of plain zip
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01: outputs are reproducible
_FLAGS = 0x08 | 0x800  # sizes in a data descriptor; UTF-8 names


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


class EntryTooLarge(Exception):
    """An entry would need zip64."""


class Entry:
    """One file being written into the archive."""

    def __init__(self, archive: "ZipStream", name: str, level: int):
        self.archive = archive
        self.name = name.encode("utf-8")
        self.offset = archive.offset
        self.crc = 0
        self.size = 0
        self.compressed = 0
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        header = (_u32(0x04034B50) + _u16(20) + _u16(_FLAGS) + _u16(8) + _u16(0) + _u16(_DOS_DATE)
                  + _u32(0) + _u32(0) + _u32(0) + _u16(len(self.name)) + _u16(0) + self.name)
        archive._write(header)

    def write(self, data: bytes) -> None:
        """Compress and append bytes."""
        if self.size + len(data) > MAX_ENTRY or self.archive.offset > MAX_ENTRY:
            raise EntryTooLarge(self.name.decode())
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        out = self._deflate.compress(data)
        if out:
            self.compressed += len(out)
            self.archive._write(out)

    def close(self) -> None:
        """Finish the entry and its data descriptor."""
        out = self._deflate.flush()
        self.compressed += len(out)
        self.archive._write(out)
        self.archive._write(_u32(0x08074B50) + _u32(self.crc) + _u32(self.compressed) + _u32(self.size))
        self.archive.entries.append(self)


class ZipStream:
    """Writes a zip archive to a binary file, entry by entry."""

    def __init__(self, handle, level: int = 1):
        self.handle = handle
        self.level = level
        self.offset = 0
        self.entries: list[Entry] = []

    def _write(self, data: bytes) -> None:
        self.handle.write(data)
        self.offset += len(data)

    def open(self, name: str) -> Entry:
        """Start a new entry (the previous one must be closed)."""
        return Entry(self, name, self.level)

    def add(self, name: str, data: bytes) -> None:
        """Write a whole small entry."""
        entry = self.open(name)
        entry.write(data)
        entry.close()

    def close(self) -> None:
        """Write the central directory."""
        start = self.offset
        for e in self.entries:
            self._write(_u32(0x02014B50) + _u16(20) + _u16(20) + _u16(_FLAGS) + _u16(8) + _u16(0)
                        + _u16(_DOS_DATE) + _u32(e.crc) + _u32(e.compressed) + _u32(e.size)
                        + _u16(len(e.name)) + _u16(0) + _u16(0) + _u16(0) + _u16(0) + _u32(0)
                        + _u32(e.offset) + e.name)
        size = self.offset - start
        count = len(self.entries)
        self._write(_u32(0x06054B50) + _u16(0) + _u16(0) + _u16(count) + _u16(count) + _u32(size)
                    + _u32(start) + _u16(0))
