"""Paths of the embedded MS MARCO sample shipped as package data (built by scripts/build_sample.py).

Example:
    >>> paths = sample_paths()
    >>> sorted(paths)
    ['collection', 'qrels_dev', 'qrels_train', 'queries_dev', 'queries_train', 'readme', 'triples_train']
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_FILES = {
    "collection": "collection.tsv.gz",
    "queries_train": "queries.train.tsv",
    "queries_dev": "queries.dev.tsv",
    "qrels_train": "qrels.train.txt",
    "qrels_dev": "qrels.dev.txt",
    "triples_train": "triples.train.tsv",
    "readme": "README.md",
}


def sample_paths() -> dict[str, Path]:
    """`{name: Path}` of the sample files (see `tct_hf/data/sample/README.md` for content, split and licence)."""
    folder = resources.files("tct_hf.data") / "sample"
    paths = {name: Path(str(folder / filename)) for name, filename in SAMPLE_FILES.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"embedded sample files missing: {missing}; rebuild with scripts/build_sample.py")
    return paths
