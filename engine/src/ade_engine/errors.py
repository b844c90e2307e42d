"""Errors that end a run: each carries the stable `run.error` code (SPEC §9).

| code | when |
|---|---|
| `config_error` | the configuration is broken, or its code raised (names the file and line) |
| `input_unreadable` | an input is missing, not a spreadsheet, or cannot be parsed |
| `memory_limit` | a MemoryError anywhere (the run's address-space limit) |
| `file_size_limit` | writing an output failed with EFBIG (the run's file-size limit) |
| `internal_error` | anything else, including bad command-line usage |
"""

import errno


class EngineError(Exception):
    """A run failure with a code, a user-facing message and extra payload fields."""

    code = "internal_error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def payload(self) -> dict:
        """The `run.error` payload."""
        return {"code": self.code, "message": self.message, **self.details}


class ConfigError(EngineError):
    """The configuration package is broken or its code raised; `file`/`line` name the user frame."""

    code = "config_error"

    def __init__(self, message: str, file: str | None = None, line: int | None = None, **details):
        super().__init__(message, file=file, line=line, **details)


class InputError(EngineError):
    """An input cannot be read as a table."""

    code = "input_unreadable"

    def __init__(self, message: str, input_name: str | None = None):
        super().__init__(message, input=input_name)


class UsageError(EngineError):
    """The command line is wrong: the caller's fault, reported as an internal error."""

    code = "internal_error"


class FileSizeLimit(EngineError):
    """An output hit the file-size limit (RLIMIT_FSIZE → EFBIG)."""

    code = "file_size_limit"


def is_file_too_large(exc: BaseException) -> bool:
    """Whether an exception is the EFBIG of a file-size limit."""
    return isinstance(exc, OSError) and exc.errno == errno.EFBIG
