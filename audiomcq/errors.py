"""Errors that the CLI turns into one clear line instead of a traceback."""


class AudioMCQError(Exception):
    """A user-facing error: bad input, a missing file, an impossible request."""


class RecordError(AudioMCQError):
    """A record that breaks the MCQ contract, located by file and line."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")


class UsageError(AudioMCQError):
    """A command line that cannot work as given (flags that need each other): exit 2, like argparse's own errors."""
