"""Build the embedded demo sample `tct_hf/data/sample/` from the offline copies in ../shared/data (reproducible).

Inputs (see /work/shared/data/README.md): msmarco_dl19_relevant_subset (4,103 real MS MARCO passages, the 43 TREC
DL 2019 queries, graded qrels) and splade_toy_msmarco/triplets.tsv (real text triples).
Outputs: collection.tsv.gz, queries.train.tsv, queries.dev.tsv, qrels.train.txt, qrels.dev.txt (TREC),
triples.train.tsv (first 50 triples) and README.md. The queries are split by `random.Random(SEED).shuffle` of the
sorted query ids: the first TRAIN_QUERIES are train, the rest dev. gzip is written with mtime 0, so the bytes are
identical on every run.

Usage: python scripts/build_sample.py [--source ../shared/data] [--output tct_hf/data/sample]
"""

from __future__ import annotations

import argparse
import gzip
import random
import shutil
import tempfile
from pathlib import Path

SEED = 13
TRAIN_QUERIES = 30
TRIPLES = 50
README = """# Embedded MS MARCO sample (for `make demo` and tests)

Real MS MARCO v1 passage data in the MS MARCO file formats, small enough to ship in the package ({size_kb} kB).

| file | content |
|---|---|
| collection.tsv.gz | {passages:,} passages `pid<TAB>text` (gzip): the passages judged relevant (grade >= 1) for |
| | a TREC DL 2019 query, plus pid 0 |
| queries.train.tsv | {train_queries} TREC DL 2019 queries `qid<TAB>text` (train split) |
| queries.dev.tsv | {dev_queries} TREC DL 2019 queries (held-out split) |
| qrels.train.txt, qrels.dev.txt | TREC `qid 0 pid grade` ({train_qrels:,} / {dev_qrels:,} judgements, grades 1-3) |
| triples.train.tsv | the first {triples} text triples `query<TAB>positive<TAB>negative` of SPLADE's toy data |

Split: the 43 query ids, sorted, shuffled by `random.Random({seed})`; the first {train_queries} are train, the
other {dev_queries} held out. Train query ids: {train_ids}. Dev query ids: {dev_ids}.
Because every passage is relevant to some query, rank metrics on this collection are optimistic and MRR is
close to 1: report nDCG@10 on the dev split.

Built by `python scripts/build_sample.py` from the offline copies described in `../shared/data/README.md`:
- passages and queries: MS MARCO passage v1 (via JLNuijens/NOS-IRv3 @ 0090583, made with ir_datasets
  `msmarco-passage/trec-dl-2019/judged`); graded qrels: TREC DL 2019 passage qrels (anserini-tools
  `qrels/qrels.dl19-passage.txt`), restricted to grades >= 1;
- triples: naver/splade @ 8dcd33a `data/toy_data/triplets.tsv` (real MS MARCO text triples, original mojibake kept).

Licence / terms: MS MARCO is released by Microsoft for non-commercial research purposes only
(https://microsoft.github.io/msmarco/, "Terms and Conditions"); the SPLADE toy triples are CC BY-NC-SA 4.0
(NAVER). Use this sample for research and testing only.
"""


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def build(source: Path, output: Path) -> None:
    subset = source / "msmarco_dl19_relevant_subset"
    collection = read_tsv(subset / "collection.tsv")
    queries = dict(read_tsv(subset / "queries.tsv"))
    qrels = [line.split() for line in (subset / "qrels.txt").read_text(encoding="utf-8").splitlines()]
    query_ids = sorted(queries)
    random.Random(SEED).shuffle(query_ids)
    splits = {"train": query_ids[:TRAIN_QUERIES], "dev": query_ids[TRAIN_QUERIES:]}
    triples = (source / "splade_toy_msmarco" / "triplets.tsv").read_bytes().splitlines(keepends=True)[:TRIPLES]

    with tempfile.TemporaryDirectory(dir=output.parent) as temporary:
        staging = Path(temporary)
        body = "".join(f"{pid}\t{text}\n" for pid, text in collection).encode("utf-8")
        with (
            open(staging / "collection.tsv.gz", "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as compressed,
        ):
            compressed.write(body)
        counts = {}
        for split, ids in splits.items():
            chosen = set(ids)
            lines = [f"{qid}\t{queries[qid]}\n" for qid in ids]
            (staging / f"queries.{split}.tsv").write_text("".join(lines), encoding="utf-8")
            judged = [row for row in qrels if row[0] in chosen and int(row[3]) >= 1]
            (staging / f"qrels.{split}.txt").write_text("".join(" ".join(row) + "\n" for row in judged), "utf-8")
            counts[split] = len(judged)
        (staging / "triples.train.tsv").write_bytes(b"".join(triples))
        size_kb = sum(path.stat().st_size for path in staging.iterdir()) // 1024 + 3
        readme = README.format(
            size_kb=size_kb,
            passages=len(collection),
            train_queries=len(splits["train"]),
            dev_queries=len(splits["dev"]),
            train_qrels=counts["train"],
            dev_qrels=counts["dev"],
            triples=len(triples),
            seed=SEED,
            train_ids=", ".join(splits["train"]),
            dev_ids=", ".join(splits["dev"]),
        )
        (staging / "README.md").write_text(readme, encoding="utf-8")
        output.mkdir(parents=True, exist_ok=True)
        for path in staging.iterdir():
            shutil.move(str(path), output / path.name)


def main() -> None:
    repository = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=repository.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=repository / "tct_hf" / "data" / "sample")
    args = parser.parse_args()
    build(args.source, args.output)
    print(f"wrote {sorted(path.name for path in args.output.iterdir())} to {args.output}")


if __name__ == "__main__":
    main()
