"""Hard-negative mining: the paper's TCT HN / HN+ training data from a dense retriever's own ranking.

For every judged-relevant pair (query q, positive p) with ``rel > 0``:

1. retrieve the top ``depth`` passages for q with the encoder and the index (score desc, ties by docid asc);
2. drop every passage judged relevant for q (``rel > 0``; a judged-non-relevant passage, ``rel <= 0``, stays);
3. with a ``teacher`` (teacher-filtered mining, a guard against false negatives: unjudged passages as good as the
   positive), score the positive and every remaining candidate with the teacher and drop each candidate whose
   teacher score is at or above the positive's minus the margin, per (query, positive) row:

   - ``teacher_margin_type="absolute"`` (default): drop when ``t(q, c) >= t(q, p) - teacher_margin``;
   - ``teacher_margin_type="relative"``: drop when ``t(q, c) >= t(q, p) - |t(q, p)| * teacher_margin``
     (``0.05`` keeps a candidate only if it scores at least 5% of the positive's magnitude below it).

   sentence-transformers' ``mine_hard_negatives`` offers the same two margins with a strict ``>`` and one threshold
   per query (its lowest-scoring positive); here the comparison is ``>=`` (a candidate tied with the positive is
   dropped even at margin 0) and each positive has its own threshold;
4. draw ``num_negatives`` of the remaining candidates uniformly at random, with replacement (as castorini's
   ``hard_triplet_construct.py``: every draw independent, a passage may repeat) or without
   (``with_replacement=False``).

The output is a `datasets.Dataset` in the training format, one row per (query, positive):
``query_id, query, positive_id, positive, negative_ids (list), negatives (list)``; plus ``positive_title`` and
``negative_titles`` when the collection has titles. With a teacher, three more columns keep its verdict:
``teacher_dropped`` (int: candidates of the row's top ``depth`` the filter removed), ``positive_teacher_score``
(float) and ``negative_teacher_scores`` (list of floats, one per negative), the teacher's MaxSim scores.

Documented skips (each counted and logged as one warning, never silent):

- a query with no judged-relevant passage (no qrels, or only ``rel <= 0``) yields no row;
- a qrels query absent from ``queries`` yields no row;
- a query whose candidates are exhausted — none left after dropping the relevant ones (and the teacher's
  rejections), or, without replacement, fewer than ``num_negatives`` — yields no row (every row has exactly
  ``num_negatives`` negatives, which the collator expects).

A judged-relevant passage missing from the collection is an error (the qrels and the collection do not match), and so
is a teacher that cannot read the texts (see `check_teacher_reads`): both are found before anything is encoded. A
mining that yields no row at all is an error too (there is no empty dataset: a training run on it could only fail).

The rows are built by `tct_hf.data.build_training_examples` from the dense run (the teacher filter is its
``candidate_filter``), so mined data and qrels-driven data share one sampler and one column schema. Determinism: one
`random.Random(seed)` draws for the queries in ``queries`` order and each query's positives in docid order, so the
same inputs and seed give the same dataset.

Example::

    encoder = load_encoder("my-student")
    index = load_index("index/")
    mined = mine_hard_negatives(encoder, index, "queries.tsv", "qrels.txt", collection="collection.tsv", depth=200)
    save_mined_negatives(mined, "hn-data/")
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tct_hf.data.lookup import as_lookup
from tct_hf.data.training_examples import build_training_examples, negative_candidates
from tct_hf.outputs import OutputKind, atomic_directory

logger = logging.getLogger(__name__)


def _as_queries(queries: Mapping[str, str] | str | Path) -> dict[str, str]:
    if isinstance(queries, (str, Path)):
        from tct_hf.data.msmarco import read_queries

        return read_queries(queries)
    return {str(qid): text for qid, text in queries.items()}


def _as_qrels(qrels: Mapping[str, Mapping[str, int]] | str | Path) -> dict[str, dict[str, int]]:
    if isinstance(qrels, (str, Path)):
        from tct_hf.data.run_files import read_qrels

        return read_qrels(qrels)
    return {str(qid): {str(docid): int(rel) for docid, rel in judged.items()} for qid, judged in qrels.items()}


def _as_index(index: Any) -> Any:
    if isinstance(index, (str, Path)):
        from tct_hf.retrieval.index import load_index

        return load_index(index)
    return index


def mine_hard_negatives(
    encoder: Any,
    index: Any,
    queries: Mapping[str, str] | str | Path,
    qrels: Mapping[str, Mapping[str, int]] | str | Path,
    depth: int = 200,
    num_negatives: int = 1,
    with_replacement: bool = True,
    seed: int = 42,
    collection: Any = None,
    batch_size: int = 64,
    teacher: Any = None,
    teacher_margin: float = 0.0,
    teacher_margin_type: str = "absolute",
    teacher_batch_size: int = 64,
    allow_model_mismatch: bool = False,
) -> Any:
    """Mine hard negatives for every judged-relevant (query, positive) pair; see the module docstring.

    Args:
        encoder: encodes the queries (`TCTModel` or anything from `load_encoder`); must match the index.
        index: a `DenseIndex` or an index directory.
        queries: ``{qid: text}`` or a ``qid<TAB>text`` file.
        qrels: ``{qid: {docid: rel}}`` or a qrels file (TREC or MS MARCO format).
        depth: candidates are the top ``depth`` of the dense ranking (the paper: 200).
        num_negatives: negatives per row.
        with_replacement: independent draws (the paper) or distinct negatives.
        seed: seed of the sampler.
        collection: a collection file or `datasets.Dataset` (id, text, optional title) holding the passages' text.
        batch_size: query encoding batch size.
        teacher: a `ColBERTModel` (anything with ``score_matrix(queries, passages, titles, batch_size)`` and a
            ``tokenizer``) that filters the candidates (step 3 of the module docstring); None: no filter.
        teacher_margin: the filter's margin (>= 0), absolute or relative to the positive's teacher score.
        teacher_margin_type: ``"absolute"`` or ``"relative"``.
        teacher_batch_size: (query, passage) pairs per teacher forward pass.
        allow_model_mismatch: mine even when ``encoder`` is not the model that built ``index`` (its fingerprint
            differs, `DenseIndex.check_model`); by default that is a `ModelMismatchError`, raised before encoding.

    Returns:
        A `datasets.Dataset` with the columns of `tct_hf.data.schema` (ids; titles when the collection has them).
    """
    import datasets

    from tct_hf.retrieval.encode import load_corpus
    from tct_hf.retrieval.search import search

    if depth < 1 or num_negatives < 1:
        raise ValueError(f"depth ({depth}) and num_negatives ({num_negatives}) must be >= 1")
    check_teacher_margin(teacher_margin, teacher_margin_type)
    if teacher is None and teacher_margin:
        raise ValueError(f"teacher_margin={teacher_margin} needs a teacher to score the candidates")
    if collection is None:
        raise ValueError("collection is required: the passages' text fills the positive/negatives columns")
    query_texts, judgments = _as_queries(queries), _as_qrels(qrels)
    index = _as_index(index)
    if hasattr(index, "check_model"):
        from tct_hf.retrieval.fingerprint import encoder_fingerprint

        index.check_model(encoder_fingerprint(encoder), allow_mismatch=allow_model_mismatch)
    corpus, source = load_corpus(collection)
    row_of = {str(docid): row for row, docid in enumerate(corpus["id"])}

    relevant = {qid: sorted(d for d, rel in judged.items() if rel > 0) for qid, judged in judgments.items()}
    not_in_queries = [qid for qid in judgments if qid not in query_texts]
    unjudged = [qid for qid in query_texts if not relevant.get(qid)]
    mined_qids = [qid for qid in query_texts if relevant.get(qid)]
    if not_in_queries:
        logger.warning("%d qrels queries are not in the queries file; skipped", len(not_in_queries))
    if unjudged:
        logger.warning("%d queries have no judged-relevant passage; skipped", len(unjudged))
    if not mined_qids:
        raise ValueError("no query has both a text and a judged-relevant passage; check that the query ids match")
    for qid in mined_qids:
        for docid in relevant[qid]:
            if docid not in row_of:
                raise ValueError(
                    f"qrels: query {qid!r} judges docid {docid!r} relevant, but {source} has no such passage; "
                    "use the qrels of this collection"
                )

    if teacher is not None:
        check_teacher_reads(teacher, [query_texts[qid] for qid in mined_qids[:TOKENIZER_CHECK_SAMPLE]], "queries")
        sample_rows = sorted({row_of[relevant[qid][0]] for qid in mined_qids[:TOKENIZER_CHECK_SAMPLE]})
        check_teacher_reads(teacher, [text or "" for text in corpus.select(sample_rows)["text"]], "passages")

    embeddings = np.asarray(
        encoder.encode_queries([query_texts[qid] for qid in mined_qids], batch_size=batch_size), dtype=np.float32
    )
    run = search(index, embeddings, mined_qids, k=depth)

    passages = as_lookup(corpus, "collection")
    candidates_of = {qid: negative_candidates(run.get(qid, {}), judgments[qid], depth, passages) for qid in mined_qids}
    teacher_scores, candidate_filter = None, None
    dropped: dict[tuple[str, str], int] = {}
    if teacher is not None:
        pairs = [(qid, docid) for qid in mined_qids for docid in [*relevant[qid], *candidates_of[qid]]]
        teacher_scores = score_pairs(teacher, pairs, query_texts, corpus, row_of, teacher_batch_size)

        def candidate_filter(qid: str, positive: str, candidates: list[str]) -> list[str]:
            positive_score = teacher_scores[qid, positive]
            scale = abs(positive_score) if teacher_margin_type == "relative" else 1.0
            kept = [
                docid for docid in candidates if teacher_scores[qid, docid] < positive_score - teacher_margin * scale
            ]
            dropped[qid, positive] = len(candidates) - len(kept)
            return kept

    # One sampler and one column schema with qrels-driven data: the rows come from build_training_examples.
    dataset = build_training_examples(
        {qid: query_texts[qid] for qid in mined_qids},
        {qid: judgments[qid] for qid in mined_qids},
        corpus,
        {qid: run.get(qid, {}) for qid in mined_qids},
        num_negatives=num_negatives,
        min_relevance=1,
        depth=depth,
        seed=seed,
        on_short="skip",
        with_replacement=with_replacement,
        candidate_filter=candidate_filter,
    )
    exhausted = sum(len(relevant[qid]) for qid in mined_qids) - len(dataset)
    if teacher_scores is not None:
        considered = sum(len(candidates_of[qid]) * len(relevant[qid]) for qid in mined_qids)
        logger.info(
            "teacher filter (%s margin %g): dropped %d of %d candidates (%.1f%%)",
            teacher_margin_type,
            teacher_margin,
            sum(dropped.values()),
            considered,
            100.0 * sum(dropped.values()) / max(considered, 1),
        )
        if exhausted:
            logger.warning("the teacher filter is counted in those skips: lower teacher_margin to keep more")
    if len(dataset) == 0:  # an empty save_to_disk folder would not even load back (datasets refuses it)
        raise ValueError(
            f"no row mined: all {exhausted} (query, positive) pairs had fewer than "
            f"{1 if with_replacement else num_negatives} non-relevant candidates in the top {depth}. "
            "Fix: raise depth, lower num_negatives, allow replacement (or lower teacher_margin)."
        )
    if teacher_scores is not None:
        dataset = _with_teacher_columns(dataset, dropped, teacher_scores, datasets)
    return dataset


TEACHER_MARGIN_TYPES = ("absolute", "relative")
# Texts the tokenizer check reads (queries and as many positives): enough to see a wrong vocabulary, cheap to run.
TOKENIZER_CHECK_SAMPLE = 64
# A teacher whose vocabulary turns more of the texts' tokens than this into its unknown token scores noise.
MAX_UNKNOWN_TOKEN_FRACTION = 0.5


def check_teacher_margin(margin: float, margin_type: str) -> None:
    """Refuse a margin type other than absolute / relative and a negative or non-finite margin."""
    if margin_type not in TEACHER_MARGIN_TYPES:
        raise ValueError(f"teacher_margin_type={margin_type!r} is not one of {TEACHER_MARGIN_TYPES}")
    if not isinstance(margin, (int, float)) or not np.isfinite(margin) or margin < 0:
        raise ValueError(f"teacher_margin must be a finite number >= 0, got {margin!r}")


def check_teacher_reads(teacher: Any, texts: list[str], what: str = "texts") -> None:
    """Raise `ValueError` when ``teacher``'s tokenizer cannot read ``texts`` (the mined ``what``): no tokenizer,
    token ids beyond the model's embedding table (a tokenizer of another model), or more than half of the tokens
    unknown (a vocabulary of another language or script)."""
    tokenizer = getattr(teacher, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("the teacher has no tokenizer: load it from a directory with one, or set teacher.tokenizer")
    embeddings = teacher.get_input_embeddings().num_embeddings if hasattr(teacher, "get_input_embeddings") else None
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    flat = [token for row in ids for token in row]
    if embeddings is not None and flat and max(flat) >= embeddings:
        raise ValueError(
            f"the teacher's tokenizer gives token id {max(flat)} but its embedding table has {embeddings} rows: "
            "the tokenizer belongs to another model; load the teacher with its own tokenizer"
        )
    unknown = tokenizer.unk_token_id
    if unknown is not None and flat:
        fraction = sum(token == unknown for token in flat) / len(flat)
        if fraction > MAX_UNKNOWN_TOKEN_FRACTION:
            example = next(text for text, row in zip(texts, ids) if unknown in row)
            raise ValueError(
                f"the teacher's tokenizer reads {fraction:.0%} of the mined {what}' tokens as {tokenizer.unk_token} "
                f"(e.g. {example[:60]!r}): its vocabulary does not cover these texts; use a teacher trained on "
                "this language"
            )


# Queries scored together by the teacher filter: their candidates are encoded once per group however many of these
# queries share them, and the score block [group, distinct candidates] stays small (256 x 51,200 floats at depth 200).
TEACHER_QUERY_GROUP = 256


def score_pairs(
    teacher: Any,
    pairs: list[tuple[str, str]],
    query_texts: dict[str, str],
    corpus: Any,
    row_of: dict[str, int],
    batch_size: int,
) -> dict[tuple[str, str], float]:
    """The teacher's score of every (qid, docid) pair. Queries go in groups of `TEACHER_QUERY_GROUP`: each group's
    distinct passages are encoded once (``teacher.score_matrix``), and the needed pairs are read off the block;
    encoding dominates the cost, so sharing candidates across queries is what saves time."""
    from tqdm.auto import tqdm

    rows = sorted({row_of[docid] for _, docid in pairs})
    subset = corpus.select(rows)
    has_titles = "title" in corpus.column_names
    text_of = {str(item["id"]): item["text"] or "" for item in subset}
    title_of = {str(item["id"]): item["title"] or "" for item in subset} if has_titles else None
    wanted: dict[str, list[str]] = {}
    for qid, docid in pairs:
        wanted.setdefault(qid, []).append(docid)
    qids = list(wanted)
    scores: dict[tuple[str, str], float] = {}
    with tqdm(total=len(pairs), desc="teacher scores", unit="pair", disable=len(pairs) < 10_000) as progress:
        for start in range(0, len(qids), TEACHER_QUERY_GROUP):
            group = qids[start : start + TEACHER_QUERY_GROUP]
            docids = sorted({docid for qid in group for docid in wanted[qid]})
            column = {docid: position for position, docid in enumerate(docids)}
            block = np.asarray(
                teacher.score_matrix(
                    [query_texts[qid] for qid in group],
                    [text_of[docid] for docid in docids],
                    titles=None if title_of is None else [title_of[docid] for docid in docids],
                    batch_size=batch_size,
                ),
                dtype=np.float64,
            )
            for row, qid in enumerate(group):
                for docid in wanted[qid]:
                    scores[qid, docid] = float(block[row, column[docid]])
                progress.update(len(wanted[qid]))
    return scores


def _with_teacher_columns(dataset: Any, dropped: dict, teacher_scores: dict, datasets) -> Any:
    """The teacher's verdict on each row: candidates it dropped, its score of the positive and of each negative."""
    keys = list(zip(dataset["query_id"], dataset["positive_id"], dataset["negative_ids"]))
    dataset = dataset.add_column(
        "teacher_dropped", [dropped[qid, positive] for qid, positive, _ in keys], feature=datasets.Value("int32")
    )
    dataset = dataset.add_column(
        "positive_teacher_score",
        [teacher_scores[qid, positive] for qid, positive, _ in keys],
        feature=datasets.Value("float32"),
    )
    return dataset.add_column(
        "negative_teacher_scores",
        [[teacher_scores[qid, docid] for docid in negatives] for qid, _, negatives in keys],
        feature=datasets.List(datasets.Value("float32")),
    )


def _recognise_saved_dataset(directory: Path) -> str | None:
    """None when ``directory`` is a `Dataset.save_to_disk` folder (``state.json``, ``dataset_info.json`` and Arrow
    shards only), which ``overwrite`` may replace; else what in it is not such a folder's."""
    import fnmatch
    import json

    for entry in directory.iterdir():
        if entry.is_file() and (
            entry.name in ("state.json", "dataset_info.json") or fnmatch.fnmatch(entry.name, "data-*.arrow")
        ):
            continue
        return f"it holds {entry.name!r}, which is no part of a saved dataset"
    try:
        state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        state = None
    if not isinstance(state, dict) or "_data_files" not in state:
        return "it has no datasets state.json"
    return None


MINED_DATASET = OutputKind("mined dataset", is_directory=True, recognise=_recognise_saved_dataset)


def save_mined_negatives(
    dataset: Any, output_dir: str | Path, push_to_hub: str | None = None, overwrite: bool = False
) -> Path:
    """`save_to_disk` atomically (`tct_hf.outputs.atomic_directory`: written beside ``output_dir``, ``fsync``-ed,
    then renamed over it), then optionally push.

    An existing non-empty ``output_dir`` raises `tct_hf.outputs.OutputExistsError` (a `FileExistsError`) unless
    ``overwrite=True``, and even then unless it is a saved dataset (``MINED_DATASET``): other files are never
    deleted. A failed push leaves the local copy in place and re-raises with the repo named.
    """
    output = Path(output_dir)
    with atomic_directory(output, MINED_DATASET, overwrite) as staging:
        dataset.save_to_disk(str(staging))
    if push_to_hub:
        try:
            dataset.push_to_hub(push_to_hub)
        except Exception as error:
            raise RuntimeError(
                f"push to the Hub repo {push_to_hub!r} failed ({error}); the dataset is saved at {output}"
            ) from error
    return output
