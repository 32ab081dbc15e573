"""TREC run files and qrels: strict readers and an atomic, deterministic run writer (queries: `msmarco.read_queries`).

In memory a run is ``Run = dict[qid, dict[docid, score]]`` and judgments are ``Qrels = dict[qid, dict[docid, rel]]``.

On-disk formats (whitespace-separated unless noted, blank lines ignored, ``.gz`` files read transparently):

- run: ``qid Q0 docid rank score tag`` (6 columns), or MS MARCO's ``qid<TAB>pid<TAB>rank`` (3 columns, score = -rank);
- qrels: TREC ``qid 0 docid rel`` (4 columns, spaces or tabs; the second column is ignored), or MS MARCO's 2-column
  TSV ``qid<TAB>docid`` (every listed pair has relevance 1);

Every malformed line raises :class:`RunFormatError` (a ``ValueError``) naming the file, the 1-based line number and
the fix: wrong column count, empty id, duplicate ``(qid, docid)`` or duplicate qid, non-numeric score / rank /
relevance, bytes that are not UTF-8.

Ranking convention (used by :func:`write_run`, and by ``search`` and ``fuse``): documents are ordered by score
descending, ties broken by docid ascending (string order); ranks are 1-based. trec_eval itself ignores the rank
column and re-sorts by score descending with ties broken by docid *descending*, so a metric computed from a file can
differ from the written ranks only where scores tie exactly.

Example:
    >>> run = {"q1": {"d2": 1.5, "d1": 1.5, "d3": 0.2}}
    >>> write_run(run, "run.trec", tag="dense")  # doctest: +SKIP
    >>> # run.trec: "q1 Q0 d1 1 1.5 dense", "q1 Q0 d2 2 1.5 dense", "q1 Q0 d3 3 0.2 dense"
    >>> read_run("run.trec") == run  # doctest: +SKIP
    True
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from tct_hf.outputs import OutputKind, atomic_file

from .bom import strip_bom
from .errors import DataFormatError

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

__all__ = [
    "RUN_FILE",
    "Qrels",
    "Run",
    "RunFormatError",
    "ranked_order",
    "read_qrels",
    "read_run",
    "sort_run",
    "write_run",
]


class RunFormatError(DataFormatError):
    """A malformed line in a run or qrels file (a `DataFormatError`: file, line, problem and fix)."""

    def __init__(self, path: str | os.PathLike, line_number: int | None, problem: str, fix: str):
        self.line_number = line_number
        super().__init__(path, line_number, problem, fix)


def _lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for non-blank lines, decoding UTF-8 strictly (``.gz`` decompressed); a UTF-8
    byte-order mark at the start of the file is dropped (it would otherwise begin the first qid)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            raw = strip_bom(raw, line_number)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise RunFormatError(
                    path,
                    line_number,
                    f"bytes that are not UTF-8 ({error.reason} at byte {error.start})",
                    "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
                ) from error
            text = text.rstrip("\r\n")
            if text.strip():
                yield line_number, text


def _number(path, line_number: int, value: str, kind: type, what: str) -> float | int:
    try:
        return kind(value)
    except ValueError as error:
        raise RunFormatError(
            path,
            line_number,
            f"{what} {value!r} is not {'an integer' if kind is int else 'a number'}",
            f"write the {what} as {'an integer' if kind is int else 'a decimal number'}",
        ) from error


def read_run(path: str | os.PathLike) -> Run:
    """Read a run into ``{qid: {docid: score}}``: TREC ``qid Q0 docid rank score tag`` (6 columns), or MS MARCO's
    ``qid<TAB>pid<TAB>rank`` (3 columns; score = -rank so that higher is better). The first line fixes the format.

    The TREC rank column must be an integer but is otherwise ignored (scores define the order, as in trec_eval).
    Queries keep their first-appearance order.
    """
    run: Run = {}
    columns = None
    for line_number, text in _lines(path):
        fields = text.split()
        if columns is None:
            columns = 3 if len(fields) == 3 else 6
        if len(fields) != columns:
            layout = "`qid Q0 docid rank score tag`" if columns == 6 else "`qid<TAB>pid<TAB>rank` like the first line"
            raise RunFormatError(
                path,
                line_number,
                f"expected {columns} columns {layout}, found {len(fields)}",
                "write one result per line as `qid Q0 docid rank score tag`, separated by spaces",
            )
        if columns == 6:
            qid, _, docid, rank, score, _ = fields
            _number(path, line_number, rank, int, "rank")
            value = _number(path, line_number, score, float, "score")
        else:
            qid, docid, rank = fields
            value = -float(_number(path, line_number, rank, int, "rank"))
        if not np.isfinite(value):
            raise RunFormatError(path, line_number, f"score {fields[4]!r} is not finite", "write finite scores")
        scores = run.setdefault(qid, {})
        if docid in scores:
            raise RunFormatError(
                path,
                line_number,
                f"duplicate result (qid {qid!r}, docid {docid!r})",
                "keep one line per (query, document) pair",
            )
        scores[docid] = value
    return run


def read_qrels(path: str | os.PathLike) -> Qrels:
    """Read judgments: TREC ``qid 0 docid rel`` (4 columns) or MS MARCO TSV ``qid<TAB>docid`` (2 columns, rel 1).

    The format is detected from the first non-blank line; every line must then have the same column count.
    Relevance must be an integer (0 or negative means not relevant, as in trec_eval).
    """
    qrels: Qrels = {}
    columns = None
    for line_number, text in _lines(path):
        fields = text.split()
        if columns is None:
            columns = len(fields)
            if columns not in (2, 4):
                raise RunFormatError(
                    path,
                    line_number,
                    f"expected 4 columns `qid 0 docid rel` or 2 columns `qid<TAB>docid`, found {len(fields)}",
                    "write TREC qrels `qid 0 docid rel` (one judgment per line)",
                )
        if len(fields) != columns:
            raise RunFormatError(
                path,
                line_number,
                f"expected {columns} columns like the first line, found {len(fields)}",
                "use one qrels format for the whole file (`qid 0 docid rel` or `qid<TAB>docid`)",
            )
        if columns == 4:
            qid, _, docid, rel_text = fields
            relevance = _number(path, line_number, rel_text, int, "relevance")
        else:
            (qid, docid), relevance = fields, 1
        judged = qrels.setdefault(qid, {})
        if docid in judged:
            raise RunFormatError(
                path,
                line_number,
                f"duplicate judgment (qid {qid!r}, docid {docid!r})",
                "keep one judgment per (query, document) pair",
            )
        judged[docid] = relevance
    return qrels


def ranked_order(docids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices that sort documents by score descending, ties by docid ascending (this package's convention)."""
    return np.lexsort((np.asarray(docids), -np.asarray(scores, dtype=np.float64)))


def sort_run(run: Mapping[str, Mapping[str, float]], k: int | None = None) -> dict[str, list[tuple[str, float]]]:
    """Each query's ``(docid, score)`` list in ranked order (score desc, docid asc), cut to the top ``k``."""
    ranked: dict[str, list[tuple[str, float]]] = {}
    for qid, scores in run.items():
        if not scores:
            ranked[qid] = []
            continue
        docids = np.fromiter(scores.keys(), dtype=object, count=len(scores)).astype(str)
        values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
        order = ranked_order(docids, values)[:k]
        ranked[qid] = list(zip(docids[order].tolist(), values[order].tolist()))
    return ranked


def _check_token(value: str, what: str, qid: str) -> None:
    if not value or any(character.isspace() for character in value):
        raise ValueError(
            f"{what} {value!r} (query {qid!r}) is empty or contains whitespace, which a TREC run file cannot "
            "hold. Fix: use ids without spaces, tabs or newlines."
        )


_RUN_LINES_CHECKED = 20


def _recognise_run_file(path: Path) -> str | None:
    """None when the first lines of ``path`` read as a run (TREC 6 columns with ``Q0``, or MS MARCO's 3 columns),
    else why not: only a run file is replaced by ``overwrite`` (never a qrels, a collection or a queries file)."""
    try:
        lines = []
        for _, text in _lines(path):
            lines.append(text)
            if len(lines) == _RUN_LINES_CHECKED:
                break
    except (OSError, DataFormatError, EOFError) as error:
        return f"it cannot be read as a run: {error}"
    for text in lines:
        fields = text.split()
        try:
            if len(fields) == 6 and fields[1] == "Q0":
                int(fields[3]), float(fields[4])
                continue
            if len(fields) == 3 and "\t" in text:
                int(fields[2])
                continue
        except ValueError:
            pass
        return f"a line reads {text[:60]!r}, not `qid Q0 docid rank score tag`"
    return None


RUN_FILE = OutputKind("run file", is_directory=False, recognise=_recognise_run_file)


def write_run(
    run: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    tag: str = "tct_hf",
    k: int | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``run`` as a TREC run file atomically (`tct_hf.outputs.atomic_file`: a temporary file in the same
    folder, ``fsync``, then ``os.replace``).

    Queries keep the run's order; within a query documents are sorted by score descending, ties by docid ascending,
    optionally cut to the top ``k``. Scores are written with ``repr`` (shortest text that reads back exactly).
    A failure never leaves a partial file at ``path``. An existing non-empty ``path`` raises
    `tct_hf.outputs.OutputExistsError` (a `FileExistsError`) unless ``overwrite=True``, and even then unless it reads
    as a run file (``RUN_FILE``): a qrels or a collection given by mistake is never replaced.
    """
    _check_token(tag, "tag", "-")
    ranked = sort_run(run, k)
    with atomic_file(path, RUN_FILE, overwrite) as out:
        for qid, results in ranked.items():
            _check_token(qid, "query id", qid)
            for rank, (docid, score) in enumerate(results, start=1):
                _check_token(docid, "docid", qid)
                if not np.isfinite(score):
                    raise ValueError(f"score {score!r} of ({qid!r}, {docid!r}) is not finite. Fix: rescore.")
                out.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")
