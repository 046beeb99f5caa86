"""Errors that cross the user boundary, and the exit codes they map to.

The CLI turns these into one message and an exit code; nothing else in the
package prints or exits, so the Python API raises the same errors notebooks
can catch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    GATE_FAILED = 1
    BAD_INPUT = 2
    EXTERNAL = 3


@dataclass
class InputError(Exception):
    """Bad user input: names the file, the field path and line where known, and what is valid."""

    message: str
    file: Path | str | None = None
    field: str | None = None
    line: int | None = None
    valid: str | None = None

    def __str__(self) -> str:
        where = str(self.file) if self.file is not None else "<input>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.valid:
            text += f" (valid: {self.valid})"
        return text


class ExternalError(Exception):
    """An external system (Prometheus, git, Dask) failed; exit code 3."""
