"""Outputs that never clobber: the one rule every file or folder tct_hf writes follows (indexes, run files, mined
datasets), for the library and for every ``tct-hf`` command.

1. Refusal. An existing, non-empty output is refused unless ``overwrite=True`` (``--overwrite``): an earlier run's
   index or run file is never replaced by accident. An empty file or an empty folder holds nothing to lose.
2. Recognition. With ``overwrite=True`` an output is replaced only when it is recognisably of its own kind (an index
   folder holds only an index's files, a run file reads as a TREC run, a mined dataset is a ``save_to_disk``
   folder); anything else is refused even with ``overwrite`` (a typo in ``--output`` must not delete a collection or
   a folder of the user's files). Each kind's test lives with the code that writes that kind (`OutputKind`).
3. Atomicity. The new output is written aside (a hidden temporary sibling), its files and folder are ``fsync``-ed,
   then it is renamed into place and the parent folder is ``fsync``-ed; a replaced folder is first renamed aside
   and deleted only after the new one is in place. A crash, even of the machine, leaves the old output or the
   new one, never an empty or half-written file behind a completed rename.

The check runs twice: once before the work starts (`check_output`: an hour of encoding must not end in a refusal)
and once when the output is written (`atomic_file` / `atomic_directory`).

Example::

    from tct_hf.outputs import OutputKind, atomic_file

    NOTES = OutputKind("notes file", is_directory=False, recognise=lambda path: None)
    with atomic_file("notes.txt", NOTES, overwrite=False) as handle:
        handle.write("hello\\n")
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "OutputExistsError",
    "OutputKind",
    "TRAINING_OUTPUT",
    "atomic_directory",
    "atomic_file",
    "check_output",
    "fsync_directory",
    "fsync_tree",
]


class OutputExistsError(FileExistsError):
    """An output path that holds something the command may not replace; the message names the path and the fix."""


@dataclass(frozen=True)
class OutputKind:
    """A kind of output and how to recognise an existing one.

    Attributes:
        name: what it is called in messages ("index", "run file", "mined dataset").
        is_directory: whether the output is a folder (else a file).
        recognise: ``recognise(path) -> None`` when the existing, non-empty ``path`` is of this kind, else a short
            reason why not (e.g. ``"it holds notes.txt"``).
    """

    name: str
    is_directory: bool
    recognise: Callable[[Path], str | None]


# The folder a training run (the example scripts) writes checkpoints and its model into. Training replaces files of
# the same names and deletes nothing, so once the user says so (--overwrite_output_dir) any content may stay there.
TRAINING_OUTPUT = OutputKind("training output folder", is_directory=True, recognise=lambda path: None)


def _is_empty(path: Path) -> bool:
    if path.is_dir():
        return not any(path.iterdir())
    return path.stat().st_size == 0


def check_output(path: str | os.PathLike, kind: OutputKind, overwrite: bool) -> None:
    """Raise `OutputExistsError` unless ``path`` may receive a new ``kind`` output (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise OutputExistsError(f"{path} is a broken symbolic link. Fix: remove it or choose another path.")
        return
    if path.is_dir() != kind.is_directory:
        found = "a folder" if path.is_dir() else "a file"
        raise OutputExistsError(
            f"{path} is {found}, not a {kind.name}; refusing to replace it. Fix: choose another path."
        )
    if _is_empty(path):
        return
    if not overwrite:
        raise OutputExistsError(
            f"{path} already exists and is not empty. Fix: choose another path, or pass --overwrite "
            f"(overwrite=True) to replace it (only a {kind.name} is ever replaced)."
        )
    reason = kind.recognise(path)
    if reason is not None:
        raise OutputExistsError(
            f"{path} is not a {kind.name} ({reason}); refusing to replace it, even with --overwrite. "
            "Fix: choose another path, or move its contents away."
        )


def fsync_directory(path: str | os.PathLike) -> None:
    """Flush a folder's entries (new names, renames) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(path: str | os.PathLike) -> None:
    """``fsync`` every file under ``path``, then every folder (deepest first), then ``path`` itself."""
    for root, _directories, files in os.walk(path, topdown=False):
        for name in files:
            descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_directory(root)


@contextmanager
def atomic_file(
    path: str | os.PathLike, kind: OutputKind, overwrite: bool, *, encoding: str = "utf-8"
) -> Iterator[IO[str]]:
    """Open a text handle whose content replaces ``path`` only when the ``with`` block ends without an error.

    The text goes to a temporary file in the same folder (``newline="\\n"``), which is flushed, ``fsync``-ed and
    renamed over ``path``; the folder is ``fsync``-ed. An error inside the block leaves ``path`` untouched."""
    path = Path(path)
    check_output(path, kind, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding=encoding, newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        check_output(path, kind, overwrite)  # something may have appeared there while we wrote
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike, kind: OutputKind, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the ``with`` block ends without an error, its files are
    ``fsync``-ed and it replaces ``path`` (a replaced folder is renamed aside first and deleted last, so an error at
    any point leaves the previous output in place)."""
    path = Path(path)
    check_output(path, kind, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield temporary
        fsync_tree(temporary)
        check_output(path, kind, overwrite)
        if path.exists():
            retired = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
            os.replace(path, retired)
            try:
                os.replace(temporary, path)
            except BaseException:
                os.replace(retired, path)
                raise
            fsync_directory(path.parent)
            shutil.rmtree(retired)
        else:
            os.replace(temporary, path)
            fsync_directory(path.parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
