"""Outputs never clobber (`tct_hf.outputs`): the library rule on small files and folders, then every `tct-hf`
command that writes — an existing output is refused without --overwrite, and with it only an output of the
command's own kind is replaced (the user's other files survive, byte for byte); writes are fsync-ed, then renamed."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import datasets
import pytest
from utils import write_tiny_bert

from tct_hf.cli import main
from tct_hf.data.run_files import RUN_FILE, read_run, write_run
from tct_hf.outputs import OutputExistsError, OutputKind, atomic_directory, atomic_file, check_output
from tct_hf.retrieval.index import INDEX_OUTPUT, load_index

ANY = OutputKind("thing", is_directory=False, recognise=lambda path: None)
NOTHING = OutputKind("thing", is_directory=False, recognise=lambda path: "it is the user's")
FOLDER = OutputKind("folder thing", is_directory=True, recognise=lambda path: None)


def test_check_output_refuses_without_overwrite_and_unrecognised_with_it(tmp_path):
    check_output(tmp_path / "absent", ANY, overwrite=False)
    (tmp_path / "empty").write_text("")
    check_output(tmp_path / "empty", NOTHING, overwrite=False)  # an empty file holds nothing to lose
    (tmp_path / "full").write_text("x")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        check_output(tmp_path / "full", ANY, overwrite=False)
    check_output(tmp_path / "full", ANY, overwrite=True)
    with pytest.raises(OutputExistsError, match="it is the user's"):
        check_output(tmp_path / "full", NOTHING, overwrite=True)
    with pytest.raises(OutputExistsError, match="is a file, not a folder thing"):
        check_output(tmp_path / "full", FOLDER, overwrite=True)
    (tmp_path / "folder").mkdir()
    check_output(tmp_path / "folder", FOLDER, overwrite=False)  # empty folder
    with pytest.raises(OutputExistsError, match="is a folder, not a thing"):
        check_output(tmp_path / "folder", ANY, overwrite=True)


def test_atomic_writes_fsync_files_and_folders_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b)))
    with atomic_file(tmp_path / "out.txt", ANY, overwrite=False) as handle:
        handle.write("new\n")
    assert (tmp_path / "out.txt").read_text() == "new\n"
    # the temporary file is synced, renamed, then the folder holding the new name is synced
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".out.txt.")) and events[2][1] == str(tmp_path)
    events.clear()
    with atomic_directory(tmp_path / "folder", FOLDER, overwrite=False) as temporary:
        (temporary / "a").write_text("a")
    synced = [path for kind, path in events[: events.index(("replace", str(tmp_path / "folder")))]]
    assert any(path.endswith("/a") for path in synced) and any(".folder.tmp-" in path for path in synced)
    assert events[-1] == ("fsync", str(tmp_path))
    monkeypatch.setattr(os, "fsync", real_fsync)


def test_failed_writes_keep_the_previous_output(tmp_path):
    (tmp_path / "out.txt").write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "out.txt", ANY, overwrite=True) as handle:
        handle.write("half")
        raise RuntimeError("crash")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "old").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "folder", FOLDER, overwrite=True) as temporary:
        (temporary / "new").write_text("half")
        raise RuntimeError("crash")
    assert (tmp_path / "out.txt").read_text() == "old\n"
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.txt"]  # no temporary left


def test_write_run_replaces_only_a_run(tmp_path):
    run = {"q1": {"d1": 1.0}}
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    (tmp_path / "msmarco.tsv").write_text("q1\td1\t1\n")
    with pytest.raises(OutputExistsError, match="not a run file"):
        write_run(run, tmp_path / "qrels.txt", overwrite=True)
    assert (tmp_path / "qrels.txt").read_text() == "q1 0 d1 1\n"
    write_run(run, tmp_path / "msmarco.tsv", overwrite=True)  # an MS MARCO run is a run
    write_run(run, tmp_path / "run.trec")
    with pytest.raises(FileExistsError):
        write_run({"q2": {"d": 2.0}}, tmp_path / "run.trec")
    write_run({"q2": {"d": 2.0}}, tmp_path / "run.trec", overwrite=True)
    assert read_run(tmp_path / "run.trec") == {"q2": {"d": 2.0}}
    assert RUN_FILE.recognise(tmp_path / "run.trec") is None


# ------------------------------------------------------------------------------------------------ the commands


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    write_tiny_bert(root / "bert")
    docs = ["river water", "paris france", "heart blood", "car engine", "war history", "music film"]
    (root / "corpus.tsv").write_text("".join(f"d{i}\t{text}\n" for i, text in enumerate(docs)))
    (root / "queries.tsv").write_text("q1\tcapital of france\nq2\tblood cell\n")
    (root / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 1\n")
    assert cli("encode", "--model", root / "bert", "--corpus", root / "corpus.tsv", "--output", root / "index")[0] == 0
    return root


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(path: Path) -> dict[str, bytes]:
    path.mkdir()
    (path / "notes.txt").write_text("my notes")
    (path / "sub").mkdir()
    (path / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return snapshot(path)


def commands(work: Path, output: Path) -> dict[str, list]:
    model = ["--model", work / "bert"]
    return {
        "encode": ["encode", *model, "--corpus", work / "corpus.tsv", "--output", output, "--no-progress"],
        "mine-negatives": ["mine-negatives", *model, "--index", work / "index", "--queries", work / "queries.tsv",
                           "--qrels", work / "qrels.txt", "--corpus", work / "corpus.tsv", "--output", output,
                           "--depth", 4],
        "search": ["search", *model, "--index", work / "index", "--queries", work / "queries.tsv", "--output", output],
        "bm25": ["bm25", "--corpus", work / "corpus.tsv", "--queries", work / "queries.tsv", "--output", output],
        "fuse": ["fuse", "--dense", work / "run.trec", "--sparse", work / "run.trec", "--output", output],
    }  # fmt: skip


FOLDER_COMMANDS = ("encode", "mine-negatives")
FILE_COMMANDS = ("search", "bm25", "fuse")


@pytest.mark.parametrize("command", FOLDER_COMMANDS + FILE_COMMANDS)
def test_every_command_refuses_what_it_did_not_write(work, tmp_path, command):
    (work / "run.trec").write_text("q1 Q0 d1 1 2.0 t\nq2 Q0 d2 1 1.0 t\n")
    output = tmp_path / "out"
    if command in FOLDER_COMMANDS:
        before = users_folder(output)
    else:
        output.write_text("q1 0 d1 1\n")  # e.g. the qrels, given to --output by mistake
        before = {"": output.read_bytes()}
    arguments = commands(work, output)[command]
    for extra in ([], ["--overwrite"]):
        status, _, err = cli(*arguments, *extra)
        assert status == 2, err
        assert ("pass --overwrite" if not extra else "refusing to replace it") in err
        after = snapshot(output) if output.is_dir() else {"": output.read_bytes()}
        assert after == before  # nothing of the user's was deleted or changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # and nothing left beside it


@pytest.mark.parametrize("command", FOLDER_COMMANDS + FILE_COMMANDS)
def test_every_command_replaces_its_own_output_only_with_overwrite(work, tmp_path, command):
    (work / "run.trec").write_text("q1 Q0 d1 1 2.0 t\nq2 Q0 d2 1 1.0 t\n")
    output = tmp_path / "out"
    arguments = commands(work, output)[command]
    assert cli(*arguments)[0] == 0
    first = snapshot(output) if output.is_dir() else {"": output.read_bytes()}
    status, _, err = cli(*arguments)
    assert status == 2 and "already exists" in err
    assert (snapshot(output) if output.is_dir() else {"": output.read_bytes()}) == first
    status, _, err = cli(*arguments, "--overwrite")
    assert status == 0, err
    if command == "encode":
        assert load_index(output).count == 6
    elif command == "mine-negatives":
        assert len(datasets.load_from_disk(str(output))) == 2
    else:
        assert set(read_run(output)) == {"q1", "q2"}


def test_merge_index_keeps_the_users_files(work, tmp_path):
    output = tmp_path / "sharded"
    for shard in ("0/2", "1/2"):
        assert cli(*commands(work, output)["encode"], "--shard", shard)[0] == 0
    (output / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        status, _, err = cli("merge-index", "--index", output, *extra)
        assert status == 2 and "notes.txt" in err, err
    assert sorted(p.name for p in output.iterdir()) == ["notes.txt", "shard-0-of-2", "shard-1-of-2"]
    (output / "notes.txt").unlink()
    assert cli("merge-index", "--index", output)[0] == 0
    assert load_index(output).count == 6 and INDEX_OUTPUT.recognise(output) is None


@pytest.mark.parametrize("command", ["search", "bm25", "mine-negatives"])
def test_every_command_refuses_an_empty_queries_file_and_reads_through_a_bom(work, tmp_path, command):
    queries = work / "queries.tsv"
    (tmp_path / "empty.tsv").write_text("")
    arguments = [str(a) for a in commands(work, tmp_path / "out")[command]]
    arguments[arguments.index(str(queries))] = str(tmp_path / "empty.tsv")
    status, _, err = cli(*arguments)
    assert status == 2 and "no query in the file" in err, err
    assert not (tmp_path / "out").exists()
    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbf" + queries.read_bytes())
    arguments[arguments.index(str(tmp_path / "empty.tsv"))] = str(tmp_path / "bom.tsv")
    assert cli(*arguments)[0] == 0
    if command == "mine-negatives":
        assert sorted(set(datasets.load_from_disk(str(tmp_path / "out"))["query_id"])) == ["q1", "q2"]
    else:
        assert set(read_run(tmp_path / "out")) == {"q1", "q2"}  # not "\ufeffq1"
