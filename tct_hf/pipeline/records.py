"""A stage's folder and its `stage.json`: fingerprints of what a stage read, and the resume rule.

A stage is done when its folder holds a `stage.json` whose ``fingerprint`` equals the one computed now. The
fingerprint hashes the stage's kind, round and configuration, and its inputs: for an earlier stage's output, that
stage's ``run_id`` (a fresh random id written each time the stage finishes, so redoing a stage invalidates every
stage that read it, even with an unchanged configuration); for a user file or folder, its resolved path, size and
modification time (content hashes of a multi-gigabyte collection would cost more than some stages); for a Hub id,
the id. `stage.json` is written last, atomically, so an interrupted stage has none and is redone; a stage about to
run records its fingerprint in `started.json`: when that fingerprint still matches and the attempt left a Trainer
checkpoint (``save_steps``), the folder is kept and training resumes from the checkpoint; otherwise the folder is
emptied first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from tct_hf.outputs import OutputKind, atomic_file

STAGE_FILE = "stage.json"
STARTED_FILE = "started.json"


def path_fingerprint(value: str | Path | None) -> Any:
    """Resolved path, size and mtime of a file, of each file of a folder, or the string itself (a Hub id)."""
    if value is None:
        return None
    path = Path(value)
    if not path.exists():
        return str(value)
    if path.is_file():
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [str(path.resolve()), [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]]


def fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def read_record(stage_dir: Path) -> dict[str, Any] | None:
    """The stage's `stage.json`, or None when it has none or an unreadable one."""
    try:
        return json.loads((stage_dir / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_done(stage_dir: Path, expected: str) -> dict[str, Any] | None:
    """The record when the stage finished with this fingerprint and its outputs are still there, else None."""
    record = read_record(stage_dir)
    if record is None or record.get("fingerprint") != expected:
        return None
    if not all((stage_dir / relative).exists() for relative in record.get("outputs", {}).values()):
        return None
    return record


def prepare(stage_dir: Path, expected: str) -> bool:
    """Make ``stage_dir`` ready to (re)run the stage; True when a same-fingerprint attempt left state to resume.

    A stale `stage.json` goes first, so a crash from here on can never look finished."""
    (stage_dir / STAGE_FILE).unlink(missing_ok=True)
    resumable = False
    try:
        resumable = json.loads((stage_dir / STARTED_FILE).read_text()).get("fingerprint") == expected
    except (OSError, ValueError):
        pass
    # Only a Trainer checkpoint is worth keeping; anything else an attempt left is redone from scratch.
    resumable = resumable and any(stage_dir.glob("*-trainer/checkpoint-*"))
    if not resumable and stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(stage_dir / STARTED_FILE, {"fingerprint": expected, "started_at": time.time()})
    return resumable


def finish(stage_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write `stage.json` (with a new ``run_id``) last and atomically, and drop `started.json`."""
    record = {**record, "run_id": uuid.uuid4().hex, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomically(stage_dir / STAGE_FILE, record)
    (stage_dir / STARTED_FILE).unlink(missing_ok=True)
    return record


# Only the pipeline writes its stage folders' records: any file there may be replaced (resume rewrites them).
RECORD_FILE = OutputKind("pipeline record", is_directory=False, recognise=lambda path: None)


def write_json_atomically(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON through `tct_hf.outputs.atomic_file` (written aside, ``fsync``-ed, renamed, folder
    ``fsync``-ed): a machine crash never leaves an empty `stage.json` behind a completed rename."""
    with atomic_file(path, RECORD_FILE, overwrite=True) as file:
        json.dump(payload, file, indent=2, default=str)
        file.write("\n")
