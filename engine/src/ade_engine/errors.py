"""Errors that end a run with a clear message."""


class EngineError(Exception):
    """A run failure with a user-facing message and the input it concerns, if any."""

    def __init__(self, message: str, input_name: str | None = None):
        super().__init__(message)
        self.message = message
        self.input_name = input_name
