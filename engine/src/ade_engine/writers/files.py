"""Output files: safe names derived from the input's file name, written atomically.

Every output is first written as a hidden temporary file in the output
directory; finished files are renamed into place together when the run
succeeds (`publish`), and on failure every temporary is removed (`abort`),
so a failed run leaves no partial outputs.
Names use only `[A-Za-z0-9._-]`, never start with a dot and never hold a
path separator, whatever the input was called.
"""

import os

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def safe_stem(input_name: str) -> str:
    """The input's base name without its extension, made safe: `../x y.csv` → `x_y`."""
    base = input_name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    cleaned = "".join(c if c in _SAFE else "_" for c in stem).lstrip("._-")[:100]
    return cleaned or "input"


class Outputs:
    """The run's output directory: unique names, temp files, and what was committed."""

    def __init__(self, directory: str, enabled: bool):
        self.directory = directory
        self.enabled = enabled
        self.names: set[str] = set()
        self.committed: list[str] = []
        self._open: dict[str, tuple] = {}
        self._finished: list[tuple[str, str]] = []

    def stem_for(self, input_name: str) -> str:
        """A stem for this input's outputs, unique within the run."""
        stem = safe_stem(input_name)
        candidate, n = stem, 1
        while candidate in self.names:
            n += 1
            candidate = f"{stem}-{n}"
        self.names.add(candidate)
        return candidate

    def create(self, name: str, text: bool = False):
        """Open a temporary file that `commit(name)` renames to `name`."""
        os.makedirs(self.directory, exist_ok=True)
        temp = os.path.join(self.directory, f".{name}.{os.getpid()}.part")
        handle = open(temp, "w", encoding="utf-8", newline="") if text else open(temp, "wb")
        self._open[name] = (temp, handle)
        return handle

    def temp_path(self, name: str) -> str:
        """Where the unfinished file `name` is being written."""
        return self._open[name][0]

    def commit(self, name: str) -> None:
        """Close a finished file; it is published with the others when the run succeeds."""
        temp, handle = self._open.pop(name)
        handle.close()
        self._finished.append((name, temp))
        self.committed.append(name)

    def publish(self) -> None:
        """Move every finished file into place."""
        for name, temp in self._finished:
            os.replace(temp, os.path.join(self.directory, name))
        self._finished.clear()

    def discard(self, name: str) -> None:
        """Close and drop an unfinished file."""
        entry = self._open.pop(name, None)
        if entry:
            temp, handle = entry
            try:
                handle.close()
            except OSError:
                pass
            try:
                os.unlink(temp)
            except OSError:
                pass

    def abort(self) -> None:
        """Remove every temporary file, finished or not (on failure)."""
        for name in list(self._open):
            self.discard(name)
        for _, temp in self._finished:
            try:
                os.unlink(temp)
            except OSError:
                pass
        self._finished.clear()
        self.committed.clear()
