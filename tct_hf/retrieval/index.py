"""Dense faiss indexes: build, save atomically, load with validation, merge shards, optional GPU.

An index folder holds three files:

- ``index.faiss``: the faiss index (always written from a CPU copy);
- ``docids.txt``: one docid per line, line ``i`` = faiss id ``i``;
- ``metadata.json``: ``{"format_version", "dim", "count", "kind", "metric", "model_name", "extra", "model",
  "checksums"}``: ``model`` records the encoder that built the index (``name``, ``dim`` and its fingerprint from
  `tct_hf.retrieval.fingerprint`: weights hash, conventions, dtype), ``checksums`` the SHA-256 of ``index.faiss``
  and ``docids.txt``.

Trust on loading: `load_index` verifies the checksums (a garbled ``index.faiss`` is refused before faiss reads it),
the counts and dimensions, and that every stored vector is finite (a NaN passage is never retrieved, silently);
`DenseIndex.check_model` refuses a query encoder whose fingerprint differs from the one that built the index
(``allow_mismatch=True``, the CLI's ``--allow-model-mismatch``, turns that into a warning). An index written before
format 2 has neither record: it loads with a warning that neither its files nor its model can be checked (rebuild it
to get both).

Kinds (all inner product, the similarity TCT-ColBERT is trained for):

- ``"flat"``: ``IndexFlatIP``, exact brute force (the paper's search; default);
- ``"fp16"``: ``IndexScalarQuantizer(d, QT_fp16, METRIC_INNER_PRODUCT)``, half the memory, near-exact;
- ``"hnsw"``: ``IndexHNSWFlat(d, hnsw_m, METRIC_INNER_PRODUCT)``, approximate graph search.

Saving follows `tct_hf.outputs` (`INDEX_OUTPUT`): an existing non-empty folder is refused unless ``overwrite``,
and even then only a folder that holds nothing but an index's files (and ``shard-I-of-N`` index folders) is
replaced; the files are written into a temporary folder next to the target, ``fsync``-ed, then renamed into place,
so a crash never leaves a loadable half index and an existing index survives until the new one is complete.

Example:
    >>> import numpy as np
    >>> index = build_index(np.eye(3, dtype="float32"), ["a", "b", "c"], model_name="my-student")
    >>> index.count, index.dim, index.kind
    (3, 3, 'flat')
    >>> save_index(index, "my_index")  # doctest: +SKIP
    >>> load_index("my_index", expected_dim=3).docids  # doctest: +SKIP
    ['a', 'b', 'c']
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tct_hf.outputs import OutputKind, atomic_directory

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: metadata records the model's fingerprint and the files' checksums
CHECKED_FILES = ("index.faiss", "docids.txt")
_FINITE_CHECK_ROWS = 65_536
INDEX_FILE = "index.faiss"
DOCIDS_FILE = "docids.txt"
METADATA_FILE = "metadata.json"
KINDS = ("flat", "fp16", "hnsw")

__all__ = [
    "DenseIndex",
    "INDEX_OUTPUT",
    "IndexFormatError",
    "KINDS",
    "ModelMismatchError",
    "build_index",
    "load_index",
    "merge_index_shards",
    "save_index",
]


class IndexFormatError(ValueError):
    """An index folder that is missing files or whose files disagree; the message names the folder and the fix."""


class ModelMismatchError(ValueError):
    """The query encoder is not the model that built the index (another fingerprint)."""


def _recognise_index_folder(directory: Path) -> str | None:
    """None when ``directory`` holds only an index's files and ``shard-I-of-N`` index folders (our own output, which
    ``overwrite`` may replace), else what in it is not ours."""
    from .encode import _SHARD_DIRECTORY_RE

    for entry in directory.iterdir():
        if entry.name in (INDEX_FILE, DOCIDS_FILE, METADATA_FILE) and entry.is_file():
            continue
        shard_folder = entry.is_dir() and _SHARD_DIRECTORY_RE.fullmatch(entry.name) is not None
        leftover = (
            entry.is_dir() and entry.name.startswith(".shard-") and (".tmp-" in entry.name or ".old-" in entry.name)
        )
        if shard_folder or leftover:
            reason = _recognise_index_folder(entry)
            if reason is not None:
                return f"{entry.name}/: {reason}"
            continue
        return f"it holds {entry.name!r}, which is no part of an index"
    if (directory / METADATA_FILE).is_file():
        try:
            metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            metadata = None
        if not isinstance(metadata, dict) or "format_version" not in metadata:
            return f"its {METADATA_FILE} is not an index's"
    return None


INDEX_OUTPUT = OutputKind("index", is_directory=True, recognise=_recognise_index_folder)


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("faiss is not installed. Fix: pip install 'tct_hf[faiss]' (or 'tct_hf[gpu]').") from error
    return faiss


@dataclass
class DenseIndex:
    """A faiss index and the docids of its rows.

    Attributes:
        faiss_index: the faiss index (row ``i`` is ``docids[i]``); may live on GPU after :meth:`to_gpu`.
        docids: document ids in faiss id order.
        kind: ``"flat"``, ``"fp16"`` or ``"hnsw"``.
        model_name: the encoder that produced the vectors (checked by users against their query encoder).
        metric: always ``"ip"`` (inner product).
        extra: free-form JSON metadata (e.g. ``{"shard": [0, 2]}`` written by sharded encoding).
        model_fingerprint: the building encoder's `tct_hf.retrieval.fingerprint.encoder_fingerprint`, or None
            when unknown (an index built without one, or written before format 2).
        source: the folder it was loaded from (for messages), or None.
    """

    faiss_index: Any
    docids: list[str]
    kind: str = "flat"
    model_name: str | None = None
    metric: str = "ip"
    extra: dict = field(default_factory=dict)
    on_gpu: bool = False
    model_fingerprint: dict | None = None
    source: str | None = None

    @property
    def dim(self) -> int:
        return int(self.faiss_index.d)

    @property
    def count(self) -> int:
        return len(self.docids)

    @cached_property
    def docid_array(self) -> np.ndarray:
        """``docids`` as a numpy object array (for fancy indexing by faiss ids); computed once."""
        return np.array(self.docids, dtype=object)

    @cached_property
    def docid_ranks(self) -> np.ndarray:
        """``ranks[i]`` = position of ``docids[i]`` in ascending string order (the tie-breaker); computed once."""
        order = np.argsort(np.array(self.docids, dtype=str), kind="stable")
        ranks = np.empty(len(order), dtype=np.int64)
        ranks[order] = np.arange(len(order))
        return ranks

    def metadata(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "count": self.count,
            "kind": self.kind,
            "metric": self.metric,
            "model_name": self.model_name,
            "extra": self.extra,
            "model": {"name": self.model_name, "dim": self.dim, **(self.model_fingerprint or {"fingerprint": None})},
        }

    def check_model(self, fingerprint: dict | None, allow_mismatch: bool = False, name: str | None = None) -> None:
        """Refuse (`ModelMismatchError`) a query encoder whose ``fingerprint`` (`encoder_fingerprint`) is not the
        one recorded for the index; ``allow_mismatch`` logs a warning instead. When either side has no fingerprint
        (an old index, an encoder without torch weights) the check cannot be made: a warning says so."""
        where = self.source or "the index"
        if self.model_fingerprint is None or fingerprint is None:
            missing = "the index records no model fingerprint" if fingerprint is not None else "the encoder has none"
            logger.warning(
                "%s: cannot check that the query encoder is the model that built the index (%s); rebuild the index "
                "with this tct_hf to record it",
                where,
                missing,
            )
            return
        if self.model_fingerprint.get("fingerprint") == fingerprint.get("fingerprint"):
            return
        recorded, current = self.model_fingerprint, fingerprint
        detail = ""
        if recorded.get("weights_sha256") == current.get("weights_sha256"):
            detail = " (same weights, other conventions: prefixes, lengths, pooling or vocabulary)"
        elif recorded.get("conventions") == current.get("conventions") and recorded.get("dtype") != current.get(
            "dtype"
        ):
            detail = (
                f" (weights in {current.get('dtype')} here, {recorded.get('dtype')} when the index was built: load "
                f"the model with --dtype {recorded.get('dtype')})"
            )
        message = (
            f"{where} was built by model {self.model_name!r} (fingerprint {recorded['fingerprint'][:12]}) but the "
            f"query encoder {name or ''!s} has fingerprint {str(current.get('fingerprint'))[:12]}{detail}: its "
            "vectors would be compared with another model's. Fix: use the model that built the index, re-encode the "
            "corpus with this one, or pass --allow-model-mismatch (allow_model_mismatch=True) if you mean it."
        )
        if not allow_mismatch:
            raise ModelMismatchError(message)
        logger.warning("%s (allowed)", message)

    def check_query_dim(self, dim: int) -> None:
        """Raise a clear error when query vectors do not match the index (another model's index)."""
        if dim != self.dim:
            raise ValueError(
                f"query vectors have dimension {dim} but the index (model {self.model_name!r}) has dimension "
                f"{self.dim}. Fix: encode the queries with the model that built the index."
            )

    def to_gpu(self) -> DenseIndex:
        """Move the index to all visible GPUs (sharded over them). HNSW stays on CPU (faiss has no GPU HNSW)."""
        faiss = _faiss()
        num_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if num_gpus == 0:
            raise RuntimeError("use_gpu=True but faiss sees no GPU. Fix: pip install 'tct_hf[gpu]' on a GPU machine.")
        if self.kind == "hnsw":
            raise ValueError("faiss has no GPU HNSW. Fix: use kind='flat' or 'fp16' with use_gpu=True.")
        if self.on_gpu:
            return self
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True
        options.useFloat16 = self.kind == "fp16"
        gpu_index = faiss.index_cpu_to_all_gpus(self.faiss_index, co=options)
        return DenseIndex(
            gpu_index,
            self.docids,
            self.kind,
            self.model_name,
            self.metric,
            dict(self.extra),
            True,
            self.model_fingerprint,
            self.source,
        )

    def cpu_index(self):
        """The faiss index on CPU (a copy when it lives on GPU)."""
        return _faiss().index_gpu_to_cpu(self.faiss_index) if self.on_gpu else self.faiss_index


def _check_docids(docids: Sequence[str], where: str) -> list[str]:
    docids = [str(docid) for docid in docids]
    seen: set[str] = set()
    for position, docid in enumerate(docids):
        if not docid or any(character.isspace() for character in docid):
            raise ValueError(
                f"{where}: docid {docid!r} at position {position} is empty or contains whitespace. "
                "Fix: use ids without spaces, tabs or newlines."
            )
        if docid in seen:
            raise ValueError(f"{where}: duplicate docid {docid!r} at position {position}. Fix: make docids unique.")
        seen.add(docid)
    return docids


def _empty_faiss_index(dim: int, kind: str, hnsw_m: int, hnsw_ef_construction: int, hnsw_ef_search: int):
    faiss = _faiss()
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "fp16":
        return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = hnsw_ef_construction
        index.hnsw.efSearch = hnsw_ef_search
        return index
    raise ValueError(f"unknown index kind {kind!r}. Fix: use one of {KINDS}.")


def build_index(
    embeddings: np.ndarray,
    docids: Sequence[str],
    kind: str = "flat",
    metric: str = "ip",
    model_name: str | None = None,
    hnsw_m: int = 32,
    hnsw_ef_construction: int = 200,
    hnsw_ef_search: int = 256,
    use_gpu: bool = False,
    extra: dict | None = None,
    model_fingerprint: dict | None = None,
) -> DenseIndex:
    """Build an inner-product index over ``embeddings[i]`` ↔ ``docids[i]``.

    Args:
        embeddings: ``[N, dim]`` float array (converted to contiguous float32; must be finite).
        docids: ``N`` unique ids without whitespace.
        kind: ``"flat"`` (exact, default), ``"fp16"`` (scalar-quantized half precision) or ``"hnsw"``.
        metric: only ``"ip"`` (inner product, TCT-ColBERT's similarity).
        model_name: stored in the metadata to tie the index to its encoder.
        hnsw_m, hnsw_ef_construction, hnsw_ef_search: HNSW graph degree and beam widths.
        use_gpu: move the index to all GPUs (needs faiss-gpu).
        extra: JSON-serialisable metadata kept with the index. Segment ids from a segmented encoding
            (`segments.SegmentIds`) add their ``extra["segments"]``, which makes `search` aggregate per document.
        model_fingerprint: `tct_hf.retrieval.fingerprint.encoder_fingerprint` of the encoder of ``embeddings``;
            recorded so that `DenseIndex.check_model` can refuse another model at search time.
    """
    segments = getattr(docids, "segments", None)
    if segments is not None:
        extra = {**(extra or {}), "segments": dict(segments)}
    if metric != "ip":
        raise ValueError(f"metric {metric!r} is not supported. Fix: use metric='ip' (inner product).")
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}. Fix: use one of {KINDS}.")
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
        raise ValueError(
            f"embeddings must be a non-empty [N, dim] array, got shape {embeddings.shape}. "
            "Fix: encode at least one passage."
        )
    if len(docids) != embeddings.shape[0]:
        raise ValueError(f"{len(docids)} docids for {embeddings.shape[0]} embeddings. Fix: pass one docid per row.")
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if not np.isfinite(embeddings).all():
        rows = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
        raise ValueError(
            f"embeddings contain NaN or infinity ({len(rows)} rows, first: row {rows[0]}, docid "
            f"{str(docids[rows[0]])!r}). Fix: check the encoder (e.g. fp16 overflow, non-finite weights)."
        )
    docids = _check_docids(docids, "build_index")
    faiss_index = _empty_faiss_index(embeddings.shape[1], kind, hnsw_m, hnsw_ef_construction, hnsw_ef_search)
    faiss_index.add(embeddings)
    index = DenseIndex(faiss_index, docids, kind, model_name, metric, dict(extra or {}), False, model_fingerprint)
    return index.to_gpu() if use_gpu else index


def save_index(index: DenseIndex, directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``index`` to ``directory`` atomically; returns the directory.

    An existing non-empty ``directory`` raises `tct_hf.outputs.OutputExistsError` (a `FileExistsError`) unless
    ``overwrite=True``, and even then unless it holds only an index's files (``INDEX_OUTPUT``): a folder with other
    files is never deleted. The files go into a temporary sibling folder, are ``fsync``-ed and renamed to
    ``directory`` only once complete; a replaced index stays intact if writing the new one fails.
    """
    faiss = _faiss()
    directory = Path(directory)
    if index.count != index.faiss_index.ntotal:
        raise ValueError(f"index has {index.faiss_index.ntotal} vectors but {index.count} docids")
    with atomic_directory(directory, INDEX_OUTPUT, overwrite) as temporary:
        faiss.write_index(index.cpu_index(), str(temporary / INDEX_FILE))
        (temporary / DOCIDS_FILE).write_text("".join(f"{docid}\n" for docid in index.docids), encoding="utf-8")
        metadata = index.metadata()
        metadata["checksums"] = {name: _sha256(temporary / name) for name in CHECKED_FILES}
        (temporary / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return directory


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _verify_checksums(directory: Path, metadata: dict) -> None:
    checksums = metadata.get("checksums")
    if not checksums:
        logger.warning(
            "%s: an index without checksums (written before format 2): its files cannot be checked for corruption, "
            "nor its model against the query encoder. Rebuild it (tct-hf encode) to record both.",
            directory,
        )
        return
    for name in CHECKED_FILES:
        if name in checksums and _sha256(directory / name) != checksums[name]:
            raise IndexFormatError(
                f"{directory / name}: its content does not match the SHA-256 recorded in {METADATA_FILE} (the file "
                "was changed or corrupted after the index was written). Fix: rebuild the index (tct-hf encode)."
            )


def _check_finite_vectors(directory: Path, faiss_index: Any) -> None:
    """Refuse stored vectors that are NaN or infinite: such a passage scores NaN and is never retrieved, silently."""
    total = faiss_index.ntotal
    for start in range(0, total, _FINITE_CHECK_ROWS):
        block = faiss_index.reconstruct_n(start, min(_FINITE_CHECK_ROWS, total - start))
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise IndexFormatError(
                f"{directory / INDEX_FILE}: vector {row} (line {row + 1} of {DOCIDS_FILE}) holds NaN or infinity. "
                "Fix: rebuild the index with an encoder that gives finite vectors."
            )


def _read_metadata(directory: Path) -> dict:
    for name in (METADATA_FILE, DOCIDS_FILE, INDEX_FILE):
        if not (directory / name).is_file():
            raise IndexFormatError(
                f"{directory}: missing {name}. Fix: rebuild the index (save_index / tct-hf encode)."
            )
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise IndexFormatError(
            f"{directory / METADATA_FILE}: not valid JSON ({error}). Fix: rebuild the index."
        ) from error
    missing = [key for key in ("format_version", "dim", "count", "kind") if key not in metadata]
    if missing:
        raise IndexFormatError(f"{directory / METADATA_FILE}: missing keys {missing}. Fix: rebuild the index.")
    if metadata["format_version"] > FORMAT_VERSION:
        raise IndexFormatError(
            f"{directory}: index format {metadata['format_version']} is newer than this tct_hf "
            f"reads ({FORMAT_VERSION}). Fix: upgrade tct_hf."
        )
    return metadata


def load_index(directory: str | os.PathLike, expected_dim: int | None = None, use_gpu: bool = False) -> DenseIndex:
    """Load an index folder written by :func:`save_index`, checking that its three files agree, that they match
    their recorded checksums and that every vector is finite (`IndexFormatError` otherwise; see the module
    docstring for indexes written before format 2).

    Args:
        directory: the index folder.
        expected_dim: if given, the query dimension; a mismatch raises a clear error.
        use_gpu: move the index to all GPUs (needs faiss-gpu).
    """
    faiss = _faiss()
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such index folder. Fix: build it with save_index / tct-hf encode.")
    metadata = _read_metadata(directory)
    _verify_checksums(directory, metadata)
    lines = (directory / DOCIDS_FILE).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    docids = _check_docids(lines, str(directory / DOCIDS_FILE))
    try:
        faiss_index = faiss.read_index(str(directory / INDEX_FILE))
    except RuntimeError as error:
        raise IndexFormatError(
            f"{directory / INDEX_FILE}: faiss cannot read it ({str(error).splitlines()[0]}). Fix: rebuild the index."
        ) from error
    counts = {"metadata.json": metadata["count"], "docids.txt": len(docids), "index.faiss": faiss_index.ntotal}
    if len(set(counts.values())) != 1:
        raise IndexFormatError(f"{directory}: document counts disagree {counts}. Fix: rebuild the index.")
    if metadata["dim"] != faiss_index.d:
        raise IndexFormatError(
            f"{directory}: metadata dim {metadata['dim']} but index.faiss has {faiss_index.d}. Fix: rebuild the index."
        )
    _check_finite_vectors(directory, faiss_index)
    recorded = metadata.get("model") or {}
    fingerprint = {key: value for key, value in recorded.items() if key not in ("name", "dim")}
    index = DenseIndex(
        faiss_index,
        docids,
        metadata["kind"],
        metadata.get("model_name"),
        metadata.get("metric", "ip"),
        metadata.get("extra") or {},
        False,
        fingerprint if recorded.get("fingerprint") else None,
        str(directory),
    )
    if expected_dim is not None:
        index.check_query_dim(expected_dim)
    return index.to_gpu() if use_gpu else index


def merge_index_shards(
    shard_directories: Sequence[str | os.PathLike], output_directory: str | os.PathLike, overwrite: bool = False
) -> DenseIndex:
    """Merge index shards (e.g. written by ``--shard I/N`` processes) into one index saved at ``output_directory``.

    Shards are concatenated in shard order: by ``extra["shard"] = [i, n]`` when every shard has it (all ``n``
    shards must then be present exactly once), else in the order given. All shards must share dim, kind, metric
    and model; docids must be unique across shards. Flat and fp16 shards are merged code-for-code (no re-encoding
    loss); HNSW shards are rebuilt from their stored vectors.
    """
    faiss = _faiss()
    if not shard_directories:
        raise ValueError("no shard to merge. Fix: pass the shard index folders.")
    shards = [load_index(directory) for directory in shard_directories]
    labels = [shard.extra.get("shard") for shard in shards]
    if all(label is not None for label in labels):
        totals = {label[1] for label in labels}
        positions = sorted(label[0] for label in labels)
        if len(totals) != 1 or positions != list(range(totals.pop())):
            raise ValueError(f"shard labels {labels} do not cover 0..N-1 exactly once. Fix: pass every shard once.")
        order = sorted(range(len(shards)), key=lambda i: labels[i][0])
        shards = [shards[i] for i in order]
        shard_directories = [shard_directories[i] for i in order]
    first = shards[0]
    for directory, shard in zip(shard_directories, shards):
        for attribute in ("dim", "kind", "metric", "model_name", "model_fingerprint"):
            if getattr(shard, attribute) != getattr(first, attribute):
                mine, theirs = getattr(shard, attribute), getattr(first, attribute)
                if attribute == "model_fingerprint":
                    mine, theirs = (mine or {}).get("fingerprint"), (theirs or {}).get("fingerprint")
                raise ValueError(
                    f"{directory}: {attribute} {mine!r} differs from the first shard's {theirs!r}. "
                    "Fix: merge shards of one encoding run."
                )
    docids = _check_docids([docid for shard in shards for docid in shard.docids], "merge_index_shards")
    if first.kind == "hnsw":
        hnsw = faiss.downcast_index(first.faiss_index)
        merged = _empty_faiss_index(
            first.dim, "hnsw", hnsw.hnsw.nb_neighbors(1), hnsw.hnsw.efConstruction, hnsw.hnsw.efSearch
        )
        for shard in shards:
            merged.add(shard.faiss_index.reconstruct_n(0, shard.count))
    else:
        merged = faiss.clone_index(first.faiss_index)
        for shard in shards[1:]:
            merged.merge_from(shard.faiss_index)
    extra = {key: value for key, value in first.extra.items() if key != "shard"}
    extra["merged_from"] = len(shards)
    index = DenseIndex(
        merged, docids, first.kind, first.model_name, first.metric, extra, False, first.model_fingerprint
    )
    save_index(index, output_directory, overwrite=overwrite)
    return index
