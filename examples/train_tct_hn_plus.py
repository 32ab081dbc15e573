"""The paper's TCT-ColBERT HN+ pipeline in one resumable command.

    accelerate launch examples/train_tct_hn_plus.py                          # embedded default: the shipped sample
    accelerate launch examples/train_tct_hn_plus.py --output_dir hn --refresh_rounds 1 --teacher_margin 0
    accelerate launch examples/train_tct_hn_plus.py examples/configs/hn_plus.yaml

Stages (folders under --output_dir): 1-warmup (teacher and student on BM25 negatives), 2-mine (index the collection
with the student, mine its top 200, teacher-filtered with --teacher_margin), 3-teacher (teacher fine-tuned on the
mined negatives), 4-student (student on HN+, or HN with --negatives hn), mine/teacher/student again per
--refresh_rounds, and N-final (encode, search, evaluate). Rerun the same command after a crash: finished stages are
skipped. The report (printed as JSON, and written to OUTPUT_DIR/report.json) has every stage's dev metrics and
`final_student`, a folder that sentence-transformers loads.

Steps in `main()`:  1. arguments   2. the pipeline   3. report
"""

from __future__ import annotations

import json
import logging
import os
import sys

from transformers import HfArgumentParser

from tct_hf.pipeline import PipelineConfig, PipelineConfigError, end_processes, run_pipeline


def parse_arguments(argv: list[str]) -> PipelineConfig:
    """A YAML/JSON config file and/or command-line flags (flags win over the file, the file over the defaults)."""
    parser = HfArgumentParser(PipelineConfig)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        path = os.path.abspath(argv[0])
        read = parser.parse_yaml_file if path.endswith((".yaml", ".yml")) else parser.parse_json_file
        (from_file,) = read(path)
        parser.set_defaults(**from_file.to_dict())
        argv = argv[1:]
    return parser.parse_args_into_dataclasses(args=argv)[0]


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments (the embedded sample and small step counts unless a config file or flags say otherwise).
    config = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # 2. The pipeline: every stage checked first, finished stages skipped.
    try:
        report = run_pipeline(config)
    except PipelineConfigError as error:
        raise SystemExit(f"train_tct_hn_plus.py: error: {error}") from None

    # 3. Report.
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(report, indent=2), flush=True)
    end_processes()
    return report


if __name__ == "__main__":
    main()
