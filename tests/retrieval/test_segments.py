"""MaxP segments: windows against a naive word loop, encoding against one-by-one encoding, aggregated search against
brute force over every segment, the index metadata round trip, and every bad-input rule."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
from datasets import Dataset
from utils import WORDS, write_tiny_bert

from tct_hf.retrieval.encode import encode_corpus
from tct_hf.retrieval.encoders import load_encoder
from tct_hf.retrieval.index import build_index, load_index, merge_index_shards, save_index
from tct_hf.retrieval.search import search
from tct_hf.retrieval.segments import (
    Segmenter,
    SegmentIds,
    encode_segments,
    parse_segment_id,
    prefix_token_count,
    search_segmented,
    segment_id,
)

# Whole words of the tiny vocabulary: each is exactly one token, so token windows are word windows.
VOCAB_WORDS = [w for w in WORDS if len(w) > 1 and w not in ("q", "d")]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return load_encoder(write_tiny_bert(tmp_path_factory.mktemp("bert")), device="cpu")


def naive_windows(words: list[str], size: int, stride: int) -> list[list[str]]:
    """Windows of `size` words starting every `stride` words until the last one reaches the end."""
    if len(words) <= size:
        return [words]
    windows, start = [], 0
    while True:
        windows.append(words[start : start + size])
        if start + size >= len(words):
            return windows
        start += stride


@pytest.mark.parametrize(("window", "stride"), [(12, 3), (12, 8), (10, 6), (20, 16)])
def test_windows_equal_a_naive_word_loop_and_repeat_the_title(encoder, window, stride):
    rng = random.Random(window * 100 + stride)
    prefix = prefix_token_count(encoder)
    assert prefix == 4  # "[CLS] [D] " = [CLS] [ d ]
    segmenter = Segmenter(encoder.tokenizer, window, stride, prefix)
    bodies = [" ".join(rng.choices(VOCAB_WORDS, k=n)) for n in (1, 5, 8, 17, 40, 41)]
    titles = ["", "heat", "the city of paris", "a b c d e f g h i j k l m n", "water", ""]
    for title, body, segments in zip(titles, bodies, segmenter.split(titles, bodies)):
        title_words = title.split()[: window - prefix - stride]
        size = window - prefix - len(title_words)
        expected = naive_windows(body.split(), size, stride)
        assert [text.split() for _, text in segments] == expected
        assert all(segment_title == " ".join(title_words) for segment_title, _ in segments)
        for segment_title, text in segments:  # the model sees at most `window` tokens: nothing is truncated
            tokens = encoder.tokenize_passages([text], titles=[segment_title], max_length=512)["input_ids"]
            assert tokens.shape[1] <= window


def test_windows_snap_to_word_starts_and_cover_every_token(encoder):
    # "watering" = water ##ing: two tokens per word; a window never starts or ends between the two pieces
    words = [f"{word}ing" for word in VOCAB_WORDS[:30]]
    segmenter = Segmenter(encoder.tokenizer, window=11, stride=3, prefix_tokens=4)
    (segments,) = segmenter.split(None, [" ".join(words)])
    spans = []
    for _, text in segments:
        chunk = text.split()
        assert set(chunk) <= set(words)  # whole words only
        first = words.index(chunk[0])
        assert words[first : first + len(chunk)] == chunk
        spans.append((first, first + len(chunk)))
    assert spans[0][0] == 0 and spans[-1][1] == len(words)
    for (start, end), (next_start, _) in zip(spans, spans[1:]):
        assert start < next_start <= end  # overlapping, in order, no word skipped


def test_bad_windows_are_clear_errors(encoder):
    with pytest.raises(ValueError, match="not larger than the prefix"):
        Segmenter(encoder.tokenizer, window=4, stride=1, prefix_tokens=4)
    with pytest.raises(ValueError, match="stride 7 is larger than the window's 6 text tokens"):
        Segmenter(encoder.tokenizer, window=10, stride=7, prefix_tokens=4)
    with pytest.raises(ValueError, match="positive"):
        Segmenter(encoder.tokenizer, window=10, stride=0, prefix_tokens=4)


def test_titles_cut_or_dropped_are_counted_and_logged(encoder, caplog):
    segmenter = Segmenter(encoder.tokenizer, window=10, stride=6, prefix_tokens=4)
    with caplog.at_level(logging.WARNING):
        segments = segmenter.split(["heat water flow"], ["river city people"])
        segmenter.log()
    assert segments == [[("", "river city people")]]
    assert "0 title(s) cut to 0 tokens and 1 dropped" in caplog.text
    segmenter = Segmenter(encoder.tokenizer, window=10, stride=4, prefix_tokens=4)
    assert segmenter.split(["heat water flow"], ["river"]) == [[("heat water", "river")]]
    assert segmenter.titles_cut == 1


def test_segment_ids_round_trip():
    assert parse_segment_id(segment_id("D1#x", 12)) == ("D1#x", 12)
    with pytest.raises(ValueError, match="not a segment id"):
        parse_segment_id("D1")


def test_encode_segments_equals_encoding_each_segment_and_streams_in_chunks(encoder, tmp_path):
    rng = random.Random(5)
    rows = [(f"D{i}", rng.choice(["", "heat", "paris city"]), " ".join(rng.choices(VOCAB_WORDS, k=rng.randint(3, 30))))
            for i in range(7)]  # fmt: skip
    path = tmp_path / "msmarco-docs.tsv"
    path.write_text("".join(f"{d}\thttp://x/{d}\t{t}\t{b}\n" for d, t, b in rows), encoding="utf-8")

    calls = []
    original = encoder.encode_passages

    def recording(texts, titles=None, **kwargs):
        calls.append(len(texts))
        return original(texts, titles=titles, **kwargs)

    encoder.encode_passages = recording
    try:
        embeddings, ids = encode_corpus(
            encoder, path, segment_window=12, segment_stride=4, chunk_size=2, show_progress_bar=False
        )
    finally:
        del encoder.encode_passages
    assert isinstance(ids, SegmentIds) and ids.segments == {"window": 12, "stride": 4, "prefix_tokens": 4}
    segmenter = Segmenter(encoder.tokenizer, 12, 4, 4)
    expected_ids, expected = [], []
    split = segmenter.split([title for _, title, _ in rows], [body for *_, body in rows])
    for (docid, _, _), segments in zip(rows, split):
        for number, (segment_title, text) in enumerate(segments):
            expected_ids.append(f"{docid}#{number}")
            expected.append(encoder.encode_passages([text], titles=[segment_title], max_length=12)[0])
    assert list(ids) == expected_ids
    np.testing.assert_allclose(embeddings, np.stack(expected), atol=1e-5)
    # 7 documents read 2 at a time: 4 encoder calls, each with only its chunk's segments
    assert len(calls) == 4 and sum(calls) == len(expected_ids)


def test_sharded_segments_concatenate_and_merge_keeps_the_metadata(encoder, tmp_path):
    documents = Dataset.from_dict(
        {"id": [f"d{i}" for i in range(5)], "text": [" ".join(VOCAB_WORDS[i : i + 3 * i + 3]) for i in range(5)]}
    )
    full, full_ids = encode_segments(encoder, documents, 8, 2, show_progress_bar=False)
    directories = []
    for shard in range(2):
        part, part_ids = encode_segments(encoder, documents, 8, 2, shard=(shard, 2), show_progress_bar=False)
        index = build_index(part, part_ids, extra={"shard": [shard, 2]})
        directories.append(save_index(index, tmp_path / f"shard-{shard}-of-2"))
    merged = merge_index_shards(directories, tmp_path / "merged")
    assert merged.docids == list(full_ids)
    assert load_index(tmp_path / "merged").extra["segments"] == {"window": 8, "stride": 2, "prefix_tokens": 4}


def brute_force(query: np.ndarray, vectors: np.ndarray, ids: list[str], k: int, aggregate: str) -> dict:
    best: dict[str, float] = {}
    for vector, identifier in zip(vectors, ids):
        docid, number = parse_segment_id(identifier)
        if aggregate == "first" and number != 0:
            continue
        score = float(np.float32(vector @ query))
        best[docid] = max(best.get(docid, -np.inf), score)
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
    return dict(ranked)


@pytest.mark.parametrize("aggregate", ["max", "first"])
@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_aggregated_search_equals_brute_force_with_distinct_documents(aggregate, k):
    rng = np.random.default_rng(k)
    ids = []
    for doc in rng.permutation(40):
        ids += [segment_id(f"doc{doc}", n) for n in range(int(rng.integers(1, 9)))]
    # small integer vectors: many exact score ties, which must break by docid ascending
    vectors = rng.integers(-2, 3, size=(len(ids), 4)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(6, 4)).astype(np.float32)
    index = build_index(vectors, SegmentIds(ids, {"window": 8, "stride": 4, "prefix_tokens": 4}))
    run = search(index, queries, [f"q{i}" for i in range(6)], k=k, aggregate=None if aggregate == "max" else aggregate)
    for i, qid in enumerate(run):
        got = run[qid]
        expected = brute_force(queries[i], vectors, ids, k, aggregate)
        assert list(got.items()) == list(expected.items())
        assert len(got) == min(k, 40)  # distinct documents, as many as asked (there are 40)


def test_aggregate_on_an_index_of_passages_is_an_error():
    index = build_index(np.eye(3, dtype=np.float32), ["a", "b", "c"])
    with pytest.raises(ValueError, match="needs an index of document segments"):
        search(index, np.eye(3, dtype=np.float32), ["q1", "q2", "q3"], k=2, aggregate="max")
    with pytest.raises(ValueError, match="not one of"):
        search_segmented(build_index(np.eye(2, dtype=np.float32), SegmentIds(["a#0", "a#1"], {"w": 1})),
                         np.eye(2, dtype=np.float32), ["q1", "q2"], aggregate="mean")  # fmt: skip


def test_position_embeddings_cap_the_default_and_refuse_a_longer_request(tmp_path):
    short = load_encoder(write_tiny_bert(tmp_path / "short", max_position_embeddings=16), device="cpu")
    long_text = " ".join(VOCAB_WORDS[:40])
    tokens = short.tokenize_passages([long_text])["input_ids"]  # default 512 capped at 16: no index error
    assert tokens.shape[1] == 16
    assert short.encode_passages([long_text]).shape == (1, 32)
    with pytest.raises(ValueError, match="max_length=32 tokens, but the model has only 16 position embeddings"):
        short.encode_passages([long_text], max_length=32)
    documents = Dataset.from_dict({"id": ["d"], "text": [long_text]})
    with pytest.raises(ValueError, match="segment window 32 tokens, but the model has only 16 position embeddings"):
        encode_segments(short, documents, 32, 8, show_progress_bar=False)
    from tct_hf import ColBERTModel

    teacher = ColBERTModel.from_pretrained(str(tmp_path / "short"), convention="tct")
    assert teacher.tokenize_passages([long_text])["input_ids"].shape[1] == 16
    with pytest.raises(ValueError, match="max_length=32 tokens, but the model has only 16 position embeddings"):
        teacher.tokenize_passages([long_text], max_length=32)


def test_segments_of_a_sentence_transformers_encoder_count_its_special_tokens(tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    bert = write_tiny_bert(tmp_path / "bert")
    SentenceTransformer(modules=[Transformer(str(bert)), Pooling(32, "mean")], device="cpu").save(str(tmp_path / "st"))
    encoder = load_encoder(tmp_path / "st", encoder_type="sentence-transformers", device="cpu")
    assert prefix_token_count(encoder) == 2  # [CLS] and [SEP]: no prompt
    body = " ".join(VOCAB_WORDS[:30])
    documents = Dataset.from_dict({"id": ["a", "b"], "text": [body, "heat water"]})
    embeddings, ids = encode_segments(encoder, documents, 12, 5, show_progress_bar=False)
    segments = Segmenter(encoder.model.tokenizer, 12, 5, 2).split(None, [body, "heat water"])
    assert list(ids) == [f"a#{n}" for n in range(len(segments[0]))] + ["b#0"]
    expected = encoder.encode_passages([text for _, text in segments[0]] + ["heat water"], max_length=12)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
