"""`eager-eval`: the paper's test-time experiments, with the seed repository's flags.

    eager-eval --model_name Qwen/Qwen3-4B --data_name opencompass/AIME2025 --temperature 0.6 \\
        --entropy_threshold 2.2 --max_sequences 32 --experiments all --output_dir outputs/run1 --seed 55

Running the same command again resumes: every experiment file is completed, each prompt
exactly once. Bad input exits with status 2 and a message that says what to change.
"""

from __future__ import annotations

import logging
import sys

from evaluation.config import EvalConfig, parse_args
from evaluation.context import ModelError, build_context
from evaluation.data import DataError
from evaluation.store import DirectoryLock, ResultsError, check_directory, ignored_by_all

logger = logging.getLogger(__name__)


def run(cfg: EvalConfig) -> int:
    """Run the configured experiments; returns the process exit status."""
    from evaluation import recap
    from evaluation.runner import run_experiments

    ctx = build_context(cfg)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(ctx.out_dir):
        check_directory(ctx.out_dir, ctx.header("parallel"), cfg.overwrite, ignored_by_all(cfg.experiment_list()))
        try:
            run_experiments(ctx)
        except KeyboardInterrupt:
            logger.warning("interrupted: finished prompts are in %s; run the same command to resume.", ctx.out_dir)
            return 130
    print(recap.format_tables(recap.collect(ctx.out_dir)))
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)  # exits 2 with a usage message on a bad flag
    logging.basicConfig(
        level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        return run(cfg)
    except (DataError, ModelError, ResultsError) as exc:
        print(f"eager-eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
