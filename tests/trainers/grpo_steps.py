"""The GRPO steps the trainer tests inspect: one real two-step run per rollout generator, recorded.

Each generator trains a tiny random Qwen2 for two steps of 4 prompts x 4 rows. The prompts'
gold answers make a "yes" prompt solved by its first sequence, a "no" prompt never solved and
"coin" prompts a coin flip (tests/trainers/helpers.py), so label-aware EAGer has rows to move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from datasets import Dataset

from tests.trainers.conftest import make_args, release
from tests.trainers.helpers import Recorder, label_grade, rows

PASSES = {"allocation": "passes", "pass_start_limit": 8.0}  # (see "eager" below)
GENERATORS = {
    "parallel": {},
    # Random-model top-20 entropies sit just under ln 20 ~ 3.0: 2.9 forks a few times per prompt.
    "eager_init": {"eager_entropy_threshold": 2.9},
    # eager_adapt keeps its unused rows in the loss batch; the others drop them (the default).
    "eager_adapt": {"eager_entropy_threshold": 2.9, "eager_max_sequences": 3,
                    "eager_advanced": {"drop_unused_rows": False}},
    # 4.0: no fork on a first pass; unsolved prompts retry at lower thresholds and then fork. The random
    # model's sequences all run to the 8-token cap, so verdicts only arrive after a full pass: a pass start
    # limit of 8 passes lets several retries run one after another (the default 0.5 would allow none).
    "eager": {"eager_entropy_threshold": 4.0, "eager_advanced": PASSES},
    # The same, with each row's baseline from the verdicts known when it started (not the group mean).
    "eager_verdicts": {"rollout_generator": "eager", "eager_entropy_threshold": 4.0,
                       "eager_advanced": {**PASSES, "baseline": "verdicts"}},
    # Forks with segment credit: per-token advantages, inherited tokens out of the loss.
    "eager_segments": {"rollout_generator": "eager", "eager_entropy_threshold": 2.9,
                       "eager_advanced": {"allocation": "passes", "baseline": "verdicts", "credit": "segments"}},
    # The training allocation: 24 rows a step, 4/3 x that handed (8 prompts), a pool of 24 sequences (16 screen
    # them, 8 fill mixed ones), the loss divided by the budget's tokens (24 x 8), not the tokens the step holds;
    # groups whose rewards agree leave the loss batch (dynamic sampling).
    "screen": {"rollout_generator": "eager", "eager_screen_roots": 2,
               "per_device_train_batch_size": 24, "dynamic_sampling": True,
               "oversample": 4 / 3, "eager_advanced": {"fill_start_limit": 3.0}, "loss_normalizer": "budget"},
    # The same allocation whose fills and probes are forks of finished samples from their most uncertain token:
    # "no" prompts (all wrong) get 2 probes, forks of their wrong samples.
    "screen_refill_forks": {"rollout_generator": "eager", "eager_screen_roots": 2,
                            "per_device_train_batch_size": 24, "dynamic_sampling": True, "oversample": 4 / 3,
                            "eager_advanced": {"fill_start_limit": 3.0, "probe_roots": 2, "fill_with": "forks",
                                               "probe_with": "forks"}},
    # TRL's own sampling with DAPO's dynamic sampling: 8 prompts x 4 handed, the step trains on at most 4 groups,
    # those with a signal first.
    "parallel_dynamic": {"rollout_generator": "parallel", "dynamic_sampling": True, "oversample": 2.0},
    # The same over two accumulation slices (steps_per_generation 2): the rows that stay are split over them.
    "parallel_dynamic_accumulated": {"rollout_generator": "parallel", "dynamic_sampling": True, "oversample": 2.0,
                                     "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2},
}


class RecordingEngine:
    """The rollout engine, logging rollout starts, engine steps and new requests in order."""

    def __init__(self, engine, events: list, prompt_of) -> None:
        self._engine, self._events, self._prompt_of = engine, events, prompt_of

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def configure(self, *args, **kwargs):
        self._events.append(("rollout",))
        return self._engine.configure(*args, **kwargs)

    def add(self, request):
        self._events.append(("add", self._prompt_of(request.token_ids)))
        return self._engine.add(request)

    def step(self):
        self._events.append(("step",))
        return self._engine.step()


@dataclass
class Run:
    generator: str
    trainer: object
    before: dict
    recorder: Recorder
    # Per step: inputs after TRL merged the extra fields, the batch with every row (TRL's output, our
    # advantages) and the loss batch the trainer returned (unused rows dropped when it drops them).
    outputs: list = field(default_factory=list)
    events: list = field(default_factory=list)
    logp_pass_rows: list = field(default_factory=list)  # rows of each of TRL's log-prob passes without gradient
    loss_slices: list = field(default_factory=list)  # rows of each batch the loss saw (an accumulation slice)

    @property
    def logs(self) -> list[dict]:
        return [h for h in self.trainer.state.log_history if "loss" in h]


@pytest.fixture(scope="module", params=list(GENERATORS))
def run(request, tiny_model, tmp_path_factory) -> Run:
    generator = request.param
    args = make_args(tmp_path_factory.mktemp(generator), **{"rollout_generator": generator, **GENERATORS[generator]})
    recorder = Recorder()
    events: list = []

    def grade(text: str, gold: str) -> float:
        verdict = label_grade(text, gold)
        events.append(("verdict", gold, verdict))
        return verdict

    from trainers import EagerGRPOTrainer

    trainer = EagerGRPOTrainer(model=str(tiny_model), reward_funcs=recorder, args=args,
                               train_dataset=Dataset.from_list(rows(8)), verifier=grade)
    result = Run(generator, trainer, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}, recorder,
                 events=events)
    logp_pass, keep_rows = _record(trainer, result, events)
    try:
        trainer.train()
    finally:
        import trainers.trainer as trainer_module
        from trl import GRPOTrainer

        trainer_module.keep_rows = keep_rows
        GRPOTrainer._get_per_token_logps_and_entropies = logp_pass
    yield result
    release(trainer)


def _record(trainer, result: Run, events: list):
    """Wrap the trainer's engine, rollout, row choice, log-prob pass and loss to record what they see into `result`;
    returns the originals of what was patched at module level (TRL's log-prob pass, `keep_rows`)."""
    tokenizer = trainer.processing_class
    prompt_of = lambda ids: int(tokenizer.decode(ids).split()[1].rstrip(":"))  # noqa: E731
    make_engine = trainer.eager_engine
    trainer.eager_engine = lambda: RecordingEngine(make_engine(), events, prompt_of)
    generate_and_score = trainer._generate_and_score_completions
    import trainers.trainer as trainer_module

    keep_rows, full_batches = trainer_module.keep_rows, []
    copy = lambda output: {k: v.clone() if torch.is_tensor(v) else v for k, v in output.items()}  # noqa: E731

    def record_keep_rows(output, keep):
        full_batches.append(copy(output))
        return keep_rows(output, keep)

    def capture(inputs):
        full_batches.clear()
        output = generate_and_score(inputs)
        full = full_batches[0] if full_batches else copy(output)
        result.outputs.append(([dict(row) for row in inputs], full, copy(output)))
        return output

    from trl import GRPOTrainer

    logp_pass = GRPOTrainer._get_per_token_logps_and_entropies

    def record_logp_pass(self, model, input_ids, *args, **kwargs):
        if not torch.is_grad_enabled():
            result.logp_pass_rows.append(input_ids.size(0))
        return logp_pass(self, model, input_ids, *args, **kwargs)

    trainer._generate_and_score_completions = capture
    compute_loss = trainer.compute_loss

    def record_loss_slice(model, inputs, *args, **kwargs):
        result.loss_slices.append(inputs["completion_ids"].shape[0])
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = record_loss_slice
    trainer_module.keep_rows = record_keep_rows
    GRPOTrainer._get_per_token_logps_and_entropies = record_logp_pass
    return logp_pass, keep_rows
