"""The one exception the data readers raise for a malformed input file."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file does not have the expected format.

    The message names the file, the 1-based line number (when the problem is on one line), what is wrong and how
    to fix it, e.g.::

        collection.tsv:17: expected 2 tab-separated columns (id, text), found 3.
        Fix: remove the stray tab characters from the text, or give a 3-column file (id, title, text).

    Attributes `file`, `line`, `reason` and `fix` hold the parts for programs that handle the error.
    """

    def __init__(self, file: str | Path, line: int | None, reason: str, fix: str) -> None:
        self.file = str(file)
        self.line = line
        self.reason = reason
        self.fix = fix
        location = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{location}: {reason}\nFix: {fix}")
