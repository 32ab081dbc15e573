"""`tct-hf`: the command line over `tct_hf.retrieval` and `tct_hf.evaluation` (a thin layer, no logic of its own).

Subcommands (each has ``--help``)::

    tct-hf encode --model M --corpus collection.tsv --output INDEX_DIR [--batch-size N] [--max-length L]
                  [--dtype float32|float16|bfloat16] [--shard I/N] [--index-type flat|fp16|hnsw] [--overwrite]
                  [--segment-window W --segment-stride S]
    tct-hf merge-index --index INDEX_DIR [--overwrite]   # merge INDEX_DIR/shard-*-of-N written by --shard runs
    tct-hf search --model M --index INDEX_DIR --queries queries.tsv --output run.trec [--k 1000] [--overwrite]
                  [--aggregate max|first]
    tct-hf bm25 --corpus collection.tsv --queries queries.tsv --output run.trec [--k 1000] [--k1 0.9] [--b 0.4]
                [--overwrite]
    tct-hf fuse --dense run.trec --sparse run.trec --alpha A --output fused.trec [--k 1000] [--normalize]
                [--weight-on-dense] [--overwrite]
    tct-hf evaluate --run run.trec --qrels qrels.txt [--metrics RR@10 R@1000 nDCG@10] [--per-query]
    tct-hf mine-negatives --model M --index INDEX_DIR --queries queries.tsv --qrels qrels.txt
                          --corpus collection.tsv --output DIR [--depth 200] [--num-negatives N] [--seed S]
                          [--teacher COLBERT [--teacher-margin M] [--teacher-margin-type absolute|relative]]
                          [--overwrite]

Conventions:

- Bad input (missing file, malformed line, dimension mismatch, bad option value) exits with status 2 and prints one
  line ``tct-hf <command>: error: <reason>`` on stderr, no traceback (set ``TCT_HF_DEBUG=1`` to see it). Other
  failures exit with status 1, also in one line.
- Outputs never clobber (`tct_hf.outputs`): an existing non-empty ``--output`` (index, run file, mined dataset) is
  refused before any work unless ``--overwrite`` is given, and even then it is replaced only if it is that kind of
  output (an index folder, a file that reads as a run, a saved dataset): anything else, e.g. a qrels file or a
  folder of other files, is refused. Every output is written aside, ``fsync``-ed and renamed into place: a failed
  run leaves no partial output and the previous one intact.
- An index records the model that built it (a fingerprint of its weights and conventions) and checksums of its
  files: ``search`` and ``mine-negatives`` refuse another model (``--allow-model-mismatch`` to proceed with a
  warning), and every command refuses a corrupted index or one holding non-finite vectors.
- ``--shard I/N`` encodes the contiguous slice I of N (0-based) into ``INDEX_DIR/shard-I-of-N``; ``merge-index``
  joins them into ``INDEX_DIR``. Under ``accelerate launch -m tct_hf.cli encode ...`` each process takes shard
  ``(process_index, num_processes)`` by itself and rank 0 merges after a barrier.
- ``--segment-window W --segment-stride S`` (tokens) indexes each document as overlapping segments (MaxP, see
  `tct_hf.retrieval.segments`); ``search`` on such an index returns distinct documents scored by their best segment
  (``--aggregate max``) or their first (``first``). ``--aggregate`` on an index of passages is an error.
- ``evaluate`` prints one JSON object ``{metric: value, ..., "queries": coverage}`` (coverage: queries evaluated, run
  queries without judgments and judged queries without results, counts and ids); with ``--per-query`` it first
  prints one JSON line per query ``{"query_id": qid, metric: value, ...}`` and the aggregate object last. An empty
  run or qrels, or no query in both, is an error (as trec_eval).
- Model type (``--encoder-type auto``): see `tct_hf.retrieval.encoders` (tct_hf student, plain BERT with TCT
  conventions, or a sentence-transformers directory).

Example::

    tct-hf encode --model castorini/tct_colbert-v2-hnp-msmarco --corpus collection.tsv --output index/
    tct-hf search --model castorini/tct_colbert-v2-hnp-msmarco --index index/ --queries dev.tsv --output dense.trec
    tct-hf evaluate --run dense.trec --qrels qrels.dev.tsv --metrics RR@10 R@1000
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

PROGRAM = "tct-hf"
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
# Exceptions that mean "the user's input is wrong" (status 2); anything else is a failure (status 1).
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, UnicodeError)

logger = logging.getLogger("tct_hf.cli")


class UsageError(Exception):
    """A command-line mistake found after parsing (e.g. options that exclude each other)."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``tct-hf encode: error: ...``) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {one_line(message)}\n")


def one_line(message: object) -> str:
    """Collapse a message onto one line (our errors put their 'Fix:' on a second line)."""
    return " ".join(str(message).split())


# ---------------------------------------------------------------------------------------------- argument types


def _shard(text: str) -> tuple[int, int]:
    from tct_hf.retrieval.encode import parse_shard

    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


# ---------------------------------------------------------------------------------------------- parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from tct_hf.retrieval.encoders import DTYPES, ENCODER_TYPES

    parser.add_argument("--model", required=True, help="model directory or Hub id (student, BERT, or ST model)")
    parser.add_argument(
        "--encoder-type",
        choices=ENCODER_TYPES,
        default="auto",
        help="how to load --model; 'auto' decides from the files in the directory (default: auto)",
    )
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="weights dtype (default: checkpoint's)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=_positive_int, default=64, help="texts per forward pass (default: 64)")


def _add_overwrite(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=help or "replace an existing run file at --output (never a file that is not a run)",
    )


def _add_allow_model_mismatch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="use --model even though it is not the model that built --index (a warning instead of an error)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The `tct-hf` argument parser with all subcommands."""
    from tct_hf.evaluation.metrics import DEFAULT_METRICS
    from tct_hf.retrieval.index import KINDS

    parser = _Parser(prog=PROGRAM, description="TCT-ColBERT retrieval: encode, search, fuse, evaluate, mine.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    encode = commands.add_parser("encode", help="encode a corpus into a faiss index directory")
    _add_model_options(encode)
    encode.add_argument("--corpus", required=True, help="docid<TAB>text[<TAB>...] TSV or JSONL (id/text/title)")
    encode.add_argument("--output", required=True, help="index directory to write")
    encode.add_argument("--max-length", type=_positive_int, default=None, help="passage tokens, prefix included")
    encode.add_argument("--shard", type=_shard, default=None, help="I/N: encode slice I of N into OUTPUT/shard-I-of-N")
    encode.add_argument("--index-type", choices=KINDS, default="flat", help="faiss index kind (default: flat)")
    encode.add_argument("--skip-empty", action="store_true", help="drop passages with empty text (counted)")
    encode.add_argument(
        "--segment-window",
        type=_positive_int,
        default=None,
        metavar="W",
        help="MaxP: cut each document into windows of W tokens (prefix and repeated title included)",
    )
    encode.add_argument(
        "--segment-stride", type=_positive_int, default=None, metavar="S", help="MaxP: body tokens between windows"
    )
    _add_overwrite(encode, "replace an existing index at --output (never a folder of other files)")
    encode.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    encode.set_defaults(handler=run_encode)

    merge = commands.add_parser("merge-index", help="merge INDEX_DIR/shard-*-of-N into INDEX_DIR")
    merge.add_argument("--index", required=True, help="index directory holding the shard-I-of-N folders")
    _add_overwrite(merge, "replace a merged index already in --index (its shard folders are merged again)")
    merge.set_defaults(handler=run_merge_index)

    search = commands.add_parser("search", help="dense retrieval: queries → TREC run file")
    _add_model_options(search)
    search.add_argument("--index", required=True, help="index directory written by `tct-hf encode`")
    search.add_argument("--queries", required=True, help="qid<TAB>text file")
    search.add_argument("--output", required=True, help="TREC run file to write")
    search.add_argument("--k", type=_positive_int, default=1000, help="results per query (default: 1000)")
    search.add_argument("--max-length", type=_positive_int, default=None, help="query tokens, prefix included")
    search.add_argument("--tag", default="tct_hf", help="run tag, last column (default: tct_hf)")
    _add_allow_model_mismatch(search)
    _add_overwrite(search)
    search.add_argument(
        "--aggregate",
        choices=("max", "first"),
        default=None,
        help="segmented index only: score a document by its best segment (max, default) or its first (first)",
    )
    search.set_defaults(handler=run_search)

    bm25 = commands.add_parser("bm25", help="BM25 retrieval with bm25s: queries → TREC run file")
    bm25.add_argument("--corpus", required=True, help="docid<TAB>text TSV or JSONL")
    bm25.add_argument("--queries", required=True, help="qid<TAB>text file")
    bm25.add_argument("--output", required=True, help="TREC run file to write")
    bm25.add_argument("--k", type=_positive_int, default=1000, help="results per query (default: 1000)")
    bm25.add_argument("--k1", type=_finite_float, default=0.9, help="BM25 k1 (default: 0.9, Anserini MS MARCO)")
    bm25.add_argument("--b", type=_finite_float, default=0.4, help="BM25 b (default: 0.4, Anserini MS MARCO)")
    bm25.add_argument("--tag", default="bm25", help="run tag (default: bm25)")
    _add_overwrite(bm25)
    bm25.set_defaults(handler=run_bm25)

    fuse = commands.add_parser("fuse", help="dense-sparse fusion: alpha*sparse + dense over the union of both lists")
    fuse.add_argument("--dense", required=True, help="dense TREC run")
    fuse.add_argument("--sparse", required=True, help="sparse TREC run")
    fuse.add_argument("--alpha", type=_finite_float, default=0.1, help="weight of the sparse scores (default: 0.1)")
    fuse.add_argument("--output", required=True, help="fused TREC run file to write")
    fuse.add_argument("--k", type=_positive_int, default=1000, help="results per query (default: 1000)")
    fuse.add_argument("--normalize", action="store_true", help="Pyserini's centred min-max normalization first")
    fuse.add_argument("--weight-on-dense", action="store_true", help="score = sparse + alpha * dense")
    fuse.add_argument("--tag", default="fused", help="run tag (default: fused)")
    _add_overwrite(fuse)
    fuse.set_defaults(handler=run_fuse)

    evaluate = commands.add_parser("evaluate", help="metrics of a run (trec_eval semantics, ir-measures)")
    evaluate.add_argument("--run", required=True, help="TREC run file")
    evaluate.add_argument("--qrels", required=True, help="TREC qrels (qid 0 docid rel) or MS MARCO qid<TAB>docid")
    evaluate.add_argument(
        "--metrics", nargs="+", default=list(DEFAULT_METRICS), help=f"ir-measures names (default: {DEFAULT_METRICS})"
    )
    evaluate.add_argument("--per-query", action="store_true", help="also print one JSON line per query")
    evaluate.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave judged queries without results out of the mean (default: they count as 0, like trec_eval -c)",
    )
    evaluate.set_defaults(handler=run_evaluate)

    mine = commands.add_parser("mine-negatives", help="hard negatives from a dense ranking → training dataset")
    _add_model_options(mine)
    mine.add_argument("--index", required=True, help="index directory of --corpus encoded by --model")
    mine.add_argument("--queries", required=True, help="qid<TAB>text file")
    mine.add_argument("--qrels", required=True, help="qrels: every rel > 0 passage is a positive, never a negative")
    mine.add_argument("--corpus", required=True, help="the collection (texts of positives and negatives)")
    mine.add_argument("--output", required=True, help="directory for Dataset.save_to_disk")
    mine.add_argument("--depth", type=_positive_int, default=200, help="candidates: top DEPTH (default: 200)")
    mine.add_argument("--num-negatives", type=_positive_int, default=1, help="negatives per row (default: 1)")
    mine.add_argument("--seed", type=int, default=42, help="sampling seed (default: 42)")
    mine.add_argument(
        "--without-replacement",
        action="store_true",
        help="distinct negatives (default: with replacement, as the paper)",
    )
    mine.add_argument(
        "--teacher",
        default=None,
        metavar="COLBERT",
        help="ColBERT teacher that filters candidates it scores at or above the positive minus --teacher-margin",
    )
    mine.add_argument(
        "--teacher-margin",
        type=_finite_float,
        default=0.0,
        help="margin below the positive's teacher score a negative must reach (default: 0)",
    )
    mine.add_argument(
        "--teacher-margin-type",
        choices=("absolute", "relative"),
        default="absolute",
        help="absolute: score < pos - M; relative: score < pos - |pos| * M (default: absolute)",
    )
    mine.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="also push the dataset to this Hub repo")
    _add_allow_model_mismatch(mine)
    _add_overwrite(mine, "replace an existing mined dataset at --output (never a folder of other files)")
    mine.set_defaults(handler=run_mine_negatives)
    return parser


# ---------------------------------------------------------------------------------------------- commands


def _require_file(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")


def _load_encoder(args: argparse.Namespace) -> Any:
    """The model of ``--model``; on the CPU this process also keeps freed host memory for the next batch
    (`tct_hf.host_memory`)."""
    from tct_hf.host_memory import keep_freed_host_memory
    from tct_hf.retrieval.encoders import load_encoder

    encoder = load_encoder(args.model, device=args.device, dtype=args.dtype, encoder_type=args.encoder_type)
    if str(getattr(encoder, "device", "cpu")).startswith("cpu"):
        keep_freed_host_memory()
    return encoder


def run_encode(args: argparse.Namespace) -> int:
    from tct_hf.retrieval.encode_index import encode_index, release_process_group

    _require_file(args.corpus, "--corpus")
    if (args.segment_window is None) != (args.segment_stride is None):
        raise UsageError("--segment-window and --segment-stride go together: give both (tokens) or neither")
    try:
        result = encode_index(
            args.model,
            args.corpus,
            args.output,
            shard=args.shard,
            index_type=args.index_type,
            batch_size=args.batch_size,
            max_length=args.max_length,
            skip_empty=args.skip_empty,
            overwrite=args.overwrite,
            show_progress_bar=not args.no_progress,
            encoder_type=args.encoder_type,
            dtype=args.dtype,
            device=args.device,
            keep_freed_host_memory=True,
            segment_window=args.segment_window,
            segment_stride=args.segment_stride,
        )
        count, seconds = result.index.count, result.seconds
        rate = count / seconds if seconds > 0 else float("inf")
        print(
            f"{PROGRAM} encode: {count} passages (dim {result.index.dim}) → {result.path} in {seconds:.1f}s "
            f"({rate:.1f} passages/s)",
            file=sys.stderr,
        )
        if result.merged is not None:
            shards = result.shard[1] if result.shard is not None else 1
            print(
                f"{PROGRAM} encode: merged {shards} shards ({result.merged.count} passages) → {result.merged_path}",
                file=sys.stderr,
            )
    finally:
        release_process_group()
    return 0


def run_merge_index(args: argparse.Namespace) -> int:
    from tct_hf.retrieval.encode import find_shard_directories
    from tct_hf.retrieval.encode_index import merge_shards

    shards = len(find_shard_directories(args.index))
    merged = merge_shards(args.index, overwrite=args.overwrite)
    print(f"{PROGRAM} merge-index: {shards} shards ({merged.count} passages) → {args.index}", file=sys.stderr)
    return 0


def run_search(args: argparse.Namespace) -> int:
    from tct_hf.data.msmarco import read_queries
    from tct_hf.data.run_files import RUN_FILE, write_run
    from tct_hf.outputs import check_output
    from tct_hf.retrieval.encoders import embedding_dim
    from tct_hf.retrieval.fingerprint import encoder_fingerprint
    from tct_hf.retrieval.index import load_index
    from tct_hf.retrieval.search import search

    check_output(args.output, RUN_FILE, args.overwrite)
    index = load_index(args.index)
    if args.aggregate is not None and not index.extra.get("segments"):
        raise UsageError(
            f"--aggregate {args.aggregate}: {args.index} holds one vector per passage, not document segments; "
            "search it without --aggregate, or encode with --segment-window / --segment-stride"
        )
    queries = read_queries(args.queries)
    if not queries:
        raise ValueError(f"--queries {args.queries}: no query in the file")
    encoder = _load_encoder(args)
    if embedding_dim(encoder) is not None:  # another dimension is the plainest sign of another model: say so first
        index.check_query_dim(embedding_dim(encoder))
    index.check_model(encoder_fingerprint(encoder), allow_mismatch=args.allow_model_mismatch, name=str(args.model))
    embeddings = encoder.encode_queries(list(queries.values()), batch_size=args.batch_size, max_length=args.max_length)
    index.check_query_dim(embeddings.shape[1])
    run = search(index, embeddings, list(queries), k=args.k, aggregate=args.aggregate)
    write_run(run, args.output, tag=args.tag, k=args.k, overwrite=args.overwrite)
    return 0


def run_bm25(args: argparse.Namespace) -> int:
    from tct_hf.data.msmarco import load_collection, read_queries
    from tct_hf.data.run_files import RUN_FILE, write_run
    from tct_hf.outputs import check_output
    from tct_hf.retrieval.bm25 import bm25_search

    check_output(args.output, RUN_FILE, args.overwrite)
    _require_file(args.corpus, "--corpus")
    queries = read_queries(args.queries)
    corpus = load_collection(args.corpus)
    if len(corpus) == 0:
        raise ValueError(f"--corpus {args.corpus}: empty corpus (no passages)")
    texts = list(corpus["text"])
    if "title" in corpus.column_names:
        texts = [f"{title} {text}" if title else text for title, text in zip(corpus["title"], texts)]
    run = bm25_search(list(corpus["id"]), texts, list(queries), list(queries.values()), k=args.k, k1=args.k1, b=args.b)
    write_run(run, args.output, tag=args.tag, k=args.k, overwrite=args.overwrite)
    return 0


def run_fuse(args: argparse.Namespace) -> int:
    from tct_hf.data.run_files import RUN_FILE, read_run, write_run
    from tct_hf.outputs import check_output
    from tct_hf.retrieval.fuse import fuse

    check_output(args.output, RUN_FILE, args.overwrite)
    dense, sparse = read_run(args.dense), read_run(args.sparse)
    fused = fuse(
        dense, sparse, alpha=args.alpha, k=args.k, normalize=args.normalize, weight_on_dense=args.weight_on_dense
    )
    write_run(fused, args.output, tag=args.tag, k=args.k, overwrite=args.overwrite)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from tct_hf.data.run_files import read_qrels, read_run
    from tct_hf.evaluation.metrics import evaluate_run

    run, qrels = read_run(args.run), read_qrels(args.qrels)
    result = evaluate_run(run, qrels, metrics=args.metrics, per_query=args.per_query, complete=not args.skip_missing)
    if args.per_query:
        for qid, values in result.per_query.items():
            print(json.dumps({"query_id": qid, **values}))
    summary = result.as_dict()
    summary.pop("per_query", None)
    print(json.dumps(summary))
    return 0


def run_mine_negatives(args: argparse.Namespace) -> int:
    from tct_hf.data.msmarco import read_queries
    from tct_hf.data.run_files import read_qrels
    from tct_hf.outputs import check_output
    from tct_hf.retrieval.index import load_index
    from tct_hf.retrieval.mining import MINED_DATASET, mine_hard_negatives, save_mined_negatives

    check_output(args.output, MINED_DATASET, args.overwrite)
    _require_file(args.corpus, "--corpus")
    index = load_index(args.index)
    queries, qrels = read_queries(args.queries), read_qrels(args.qrels)
    if args.teacher_margin and not args.teacher:
        raise UsageError("--teacher-margin needs --teacher")
    encoder = _load_encoder(args)
    teacher = None
    if args.teacher:
        from tct_hf.modeling_colbert import ColBERTModel

        teacher = ColBERTModel.from_pretrained(args.teacher).to(getattr(encoder, "device", "cpu"))
    mined = mine_hard_negatives(
        encoder,
        index,
        queries,
        qrels,
        depth=args.depth,
        num_negatives=args.num_negatives,
        with_replacement=not args.without_replacement,
        seed=args.seed,
        collection=args.corpus,
        batch_size=args.batch_size,
        teacher=teacher,
        teacher_margin=args.teacher_margin,
        teacher_margin_type=args.teacher_margin_type,
        teacher_batch_size=args.batch_size,
        allow_model_mismatch=args.allow_model_mismatch,
    )
    output = save_mined_negatives(mined, args.output, push_to_hub=args.push_to_hub, overwrite=args.overwrite)
    print(f"{PROGRAM} mine-negatives: {len(mined)} rows → {output}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- entry point


def _hide_library_progress_bars() -> None:
    """Keep stderr for our own progress bar and the one-line error (no weight-loading or dataset-saving bars)."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `tct-hf` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:
        _hide_library_progress_bars()
    prefix = f"{PROGRAM} {args.command}: error:"
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"{prefix} interrupted", file=sys.stderr)
        return 130
    except (UsageError, *BAD_INPUT_ERRORS) as error:
        if os.environ.get("TCT_HF_DEBUG"):
            raise
        print(f"{prefix} {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        if os.environ.get("TCT_HF_DEBUG"):
            raise
        print(f"{prefix} {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
