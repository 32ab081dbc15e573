"""The in-batch teacher scores of 2 gloo processes with gathering, streamed (cached gradients) and not; run by
torchrun with 2 processes.

    torchrun --standalone --nproc_per_node 2 distributed_teacher_script.py TEACHER_DIR OUT_DIR

Each rank scores its own 5 queries (2 negatives each) against the gathered batch: unstreamed (chunk_size None), then
streamed with chunk sizes 1 and 3, recording the row counts of every encoder and MaxSim call. Rank 1's queries and
passages are longer than rank 0's, so the padded gathers are exercised. Then one call with 5 queries on rank 0 and 4
on rank 1 records the refusal, and tct_hf.st's teacher_scores of the same texts, gathered, with and without
chunk_size, what that path gives. Rank r saves its batch, scores, calls, refusal and st scores to OUT_DIR/rank{r}.pt.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from tct_hf import ColBERTModel
from tct_hf.data import TCTCollator
from tct_hf.st.teacher import teacher_scores as st_teacher_scores
from tct_hf.training.teacher import in_batch_teacher_scores

QUERIES_PER_RANK, NUM_NEGATIVES, CHUNK_SIZES = 5, 2, (1, 3)
WORDS = "heat water river city flow wing pressure speed shock wave theory music film game food blood".split()


def examples(rank: int, count: int = QUERIES_PER_RANK) -> list[dict]:
    rows = []
    for i in range(count):
        k = rank * QUERIES_PER_RANK + i
        words = [WORDS[(k * 3 + j) % len(WORDS)] for j in range(2 + 3 * rank + i % 2)]
        negatives = [" ".join(WORDS[(k + 5 * n + j) % len(WORDS)] for j in range(3 + 2 * n)) for n in (1, 2)]
        rows.append({"query": " ".join(words), "positive": " ".join(words * (1 + rank)), "negatives": negatives})
    return rows


def recorded(teacher) -> dict[str, list]:
    """Wrap the teacher's encoders and MaxSim to record how many rows each call sees."""
    calls = {"encode_query_tokens": [], "encode_passage_tokens": [], "maxsim": []}
    for name in ("encode_query_tokens", "encode_passage_tokens"):
        original = getattr(teacher, name)

        def recording(input_ids, *args, _original=original, _name=name, **kwargs):
            calls[_name].append(input_ids.shape[0])
            return _original(input_ids, *args, **kwargs)

        setattr(teacher, name, recording)
    original_maxsim = teacher.maxsim

    def recording_maxsim(q, q_mask, d, d_mask, chunk_elements):
        calls["maxsim"].append((q.shape[0], d.shape[0], chunk_elements, q.shape[1]))
        return original_maxsim(q, q_mask, d, d_mask, chunk_elements=chunk_elements)

    teacher.maxsim = recording_maxsim
    return calls


def main(teacher_dir: str, out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    teacher = ColBERTModel.from_pretrained(teacher_dir).eval()
    # Queries are padded to query_max_length (ColBERT's query augmentation): a different one per rank.
    collator = TCTCollator(
        None, teacher, query_max_length=12 + 4 * rank, passage_max_length=40, num_negatives=NUM_NEGATIVES
    )
    batch = collator(examples(rank))
    result = {"world_size": dist.get_world_size(), "batch": {k: v for k, v in batch.items() if "teacher" in k}}
    result["unstreamed"] = in_batch_teacher_scores(teacher, batch, gather=True, dtype_name="float32")
    for chunk_size in CHUNK_SIZES:
        calls = recorded(teacher)
        scores = in_batch_teacher_scores(teacher, batch, gather=True, dtype_name="float32", chunk_size=chunk_size)
        result[chunk_size] = {"scores": scores, "calls": calls}
        for name in calls:  # the class's methods again
            delattr(teacher, name)
    # tct_hf.st's teacher (texts in, same streamed function): cached against uncached, both gathered.
    rows = examples(rank)
    texts = [row["query"] for row in rows], [row["positive"] for row in rows]
    texts[1].extend(negative for row in rows for negative in row["negatives"])
    result["st"] = {
        chunk_size: st_teacher_scores(
            teacher,
            *texts,
            gather=True,
            teacher_autocast_dtype="float32",
            device=torch.device("cpu"),
            chunk_size=chunk_size,
        )
        for chunk_size in (None, 3)
    }
    short = collator(examples(rank, QUERIES_PER_RANK - rank))
    try:
        in_batch_teacher_scores(teacher, short, gather=True, dtype_name="float32", chunk_size=3)
        result["unequal"] = None
    except ValueError as error:
        result["unequal"] = str(error)
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
