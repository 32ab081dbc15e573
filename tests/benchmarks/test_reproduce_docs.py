"""benchmarks/reproduce_docs.py: the long documents are built as its docstring says (fast, no model)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("reproduce_docs_under_test", BENCHMARKS / "reproduce_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_documents_hold_their_target_once_at_a_seeded_slot_among_fillers_relevant_to_no_test_query():
    script = load_script()
    docids = [str(i) for i in range(30)]
    data = {
        "docids": docids,
        "texts": [f"abstract{i} words of {i}" for i in range(30)],
        "test_qrels": {"t1": {"1": 1, "2": 1, "3": 0}, "t2": {"4": 2}},
        "train_qrels": {"r1": {"5": 1}},
    }
    ids, texts, slots = script.build_documents(data, fillers=2, seed=7, count=10)
    assert {"1", "2", "4"} <= set(ids) and len(ids) == 10 and ids == sorted(ids, key=int)  # all test-relevant + 7
    relevant_to_test = {"1", "2", "4"}
    for docid, text in zip(ids, texts):
        parts = [f"abstract{word[8:]}" for word in text.split() if word.startswith("abstract")]
        assert len(parts) == 3 and parts[slots[docid]] == f"abstract{docid}"
        fillers = {p[8:] for i, p in enumerate(parts) if i != slots[docid]}
        assert docid not in fillers and not fillers & relevant_to_test
    again = script.build_documents(data, fillers=2, seed=7, count=10)
    assert again == (ids, texts, slots)  # reproducible from the seed
    assert script.build_documents(data, fillers=2, seed=8, count=10)[1] != texts
