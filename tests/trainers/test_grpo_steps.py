"""Real GRPO steps on CPU with the colocated vLLM engine, once per rollout generator.

Each generator trains a tiny random Qwen2 for two steps of 4 prompts x 4 rows. The prompts'
gold answers make a "yes" prompt solved by its first sequence, a "no" prompt never solved and
"coin" prompts a coin flip (tests/trainers/helpers.py), so label-aware EAGer has rows to move.
"""

from __future__ import annotations

import pytest
import torch

from tests.trainers.grpo_steps import run  # noqa: F401  (the fixture: one recorded run per generator)
from tests.trainers.helpers import label_of

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only


def test_parallel_is_trl_own_sampling(run):
    import vllm
    from trl.generation import vllm_generation

    if run.generator.startswith("parallel"):  # dynamic sampling included: TRL's sampling, no hook
        assert run.trainer.rollout_func is None
    else:
        assert run.trainer.rollout_func is not None
    assert vllm_generation.LLM is vllm.LLM  # the CPU engine settings applied to this trainer's engine only
    config = run.trainer.vllm_generation.llm.llm_engine.model_config
    assert config.dtype == run.trainer.model.dtype == torch.float32 and config.enforce_eager


def test_weights_move(run):
    moved = [n for n, p in run.trainer.model.named_parameters() if not torch.equal(p.detach(), run.before[n])]
    assert moved, "no parameter changed in two GRPO steps"


def carrying(inputs, output, args) -> torch.Tensor:
    """The rows a dropping trainer keeps: used, and with dynamic sampling (or segment credit) a non-zero advantage
    (0/1 rewards: every row of a group whose rewards differ has one; parallel's rows past the step have none)."""
    used = torch.tensor([row.get("eager_used", 1) for row in inputs], dtype=torch.bool)
    if not (args.dynamic_sampling or args.advanced.credit == "segments"):
        return used
    nonzero = output["advantages"] != 0
    return used & (nonzero if nonzero.dim() == 1 else nonzero.any(dim=1))


def test_rows_per_step_constant(run):
    assert len(run.outputs) == 2
    drops = run.trainer.args.drops_unused_rows
    assert drops == (run.generator in ("eager_init", "eager", "eager_verdicts", "eager_segments", "screen",
                                       "screen_refill_forks", "parallel_dynamic", "parallel_dynamic_accumulated"))
    args = run.trainer.args
    rows = args.per_device_train_batch_size * args.steps_per_generation  # a generation batch
    for inputs, output, loss_batch in run.outputs:
        assert len(inputs) == output["completion_ids"].shape[0] == output["advantages"].shape[0] == rows
        kept = int(carrying(inputs, output, args).sum()) if drops else rows
        kept = min(max(kept, args.steps_per_generation), rows) if drops else kept  # one row per slice at least
        assert loss_batch["completion_ids"].shape[0] == loss_batch["advantages"].shape[0] == kept
    # Each step's loss batch is split over its accumulation slices, sizes differing by at most one: no padding.
    slices = args.steps_per_generation
    for k, (_, _, loss_batch) in enumerate(run.outputs):
        sizes = run.loss_slices[k * slices:(k + 1) * slices]
        assert sum(sizes) == loss_batch["completion_ids"].shape[0] and max(sizes) - min(sizes) <= 1, sizes
    for log, (inputs, output, loss_batch) in zip(run.logs, run.outputs, strict=True):
        assert 0 < log["eager/rows_used_frac"] <= 1
        # what the step pays for without a loss: padding, or every masked row when rows are not dropped
        held = loss_batch["completion_ids"].shape[0]
        assert log["eager/rows_without_loss"] == held - int(carrying(inputs, output, args).sum())


def test_dropped_rows_leave_the_loss_unchanged(run):
    """The loss batch holds exactly the used rows, in order, all tensors aligned, and gives the full batch's loss."""
    trainer = run.trainer
    if not trainer.args.drops_unused_rows:
        pytest.skip("this generator keeps its rows (test_rows_per_step_constant)")
    dropped = 0
    for inputs, output, loss_batch in run.outputs:
        used = carrying(inputs, output, trainer.args)
        dropped += int((~used).sum())
        optional = [k for k in ("sampling_per_token_logps", "importance_sampling_ratio", "old_per_token_logps")
                    if k in output]
        for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", *optional):
            assert torch.equal(loss_batch[key], output[key][used]), key
        rows = {key: value.shape[0] for key, value in loss_batch.items() if torch.is_tensor(value) and value.dim()}
        assert set(rows.values()) == {int(used.sum())}, rows
        assert loss_batch["num_items_in_batch"] == output["num_items_in_batch"]
        assert torch.allclose(trainer._compute_loss(trainer.model, loss_batch),
                              trainer._compute_loss(trainer.model, output), atol=1e-6)
    if run.generator in ("eager_init", "parallel_dynamic", "screen"):
        assert dropped > 0, "expected confident prompts (or flat groups) to leave rows to drop"


def test_unused_rows_get_no_advantage_and_no_loss(run):
    saw_unused = False
    for inputs, output, _ in run.outputs:
        used = torch.tensor([row.get("eager_used", 1) for row in inputs], dtype=torch.bool)
        loss_mask = output["completion_mask"] * output.get("tool_mask", torch.ones_like(output["completion_mask"]))
        assert (loss_mask[used].sum(dim=1) > 0).all()
        if (~used).any():
            saw_unused = True
            assert (output["advantages"][~used] == 0).all()
            assert (loss_mask[~used] == 0).all()
            # Whatever an unused row holds, the loss does not move.
            trainer = run.trainer
            loss = trainer._compute_loss(trainer.model, output)
            poisoned = dict(output, advantages=output["advantages"].clone())
            poisoned["advantages"][~used] = 1e3
            assert torch.allclose(trainer._compute_loss(trainer.model, poisoned), loss)
    if run.generator in ("parallel",):
        assert not saw_unused
    elif run.generator in ("eager_init", "eager_adapt"):
        assert saw_unused, "expected confident prompts to leave rows unused"


def test_rewards_receive_each_rows_own_prompt_and_gold(run):
    tokenizer = run.trainer.processing_class
    assert len(run.recorder.calls) == len(run.outputs)
    for call, (inputs, output, _) in zip(run.recorder.calls, run.outputs):
        assert all(answer == label_of(prompt) for prompt, answer in zip(call["prompts"], call["answer"]))
        for prompt, ids, mask in zip(call["prompts"], output["prompt_ids"], output["prompt_mask"]):
            assert tokenizer.decode(ids[mask.bool()]) == prompt


def test_completions_carry_policy_logprobs(run):
    # Sampling log-probs (vLLM, processed) against the trainer's: a shifted or missing log-prob
    # (inherited prefix, fork token) would be off by whole nats.
    for log in run.logs:
        assert log["sampling/sampling_logp_difference/max"] < 0.05
        assert abs(log["sampling/importance_sampling_ratio/mean"] - 1) < 0.02


def test_eager_metrics_every_step(run):
    keys = ["rollout_tokens", "rollout_tokens_cumulative", "rows_used_frac", "sequences_per_prompt_mean",
            "sequences_per_prompt_min", "sequences_per_prompt_max", "branches_per_prompt", "frac_solved",
            "frac_with_signal", "rows_reallocated", "engine_steps", "rows_trained", "fork_rows_frac",
            "moved_rows_frac", "rows_without_loss"]
    assert len(run.logs) == 2
    for log in run.logs:
        assert all(f"eager/{key}" in log for key in keys), sorted(log)
        assert log["eager/rollout_tokens"] > 0
        # TRL's completion statistics describe the real rows only (a random model never ends early).
        assert log["completions/min_length"] == log["completions/mean_terminated_length"] + 8 == 8
        assert log["completions/clipped_ratio"] == 1
    cumulative = [log["eager/rollout_tokens_cumulative"] for log in run.logs]
    assert cumulative[1] == pytest.approx(cumulative[0] + run.logs[1]["eager/rollout_tokens"])
    for log, (inputs, output, _) in zip(run.logs, run.outputs):  # one generation per logged step
        assert log["eager/rows_trained"] == int(carrying(inputs, output, run.trainer.args).sum()) or \
            not run.trainer.args.drops_unused_rows or run.trainer.args.steps_per_generation > 1
    if run.generator in ("eager_segments", "eager_init", "eager_adapt"):  # trained rows that forks started
        assert max(log["eager/fork_rows_frac"] for log in run.logs) > 0
    if run.generator in ("eager", "screen", "screen_refill_forks"):  # rows a verdict placed: extra passes, fills
        assert max(log["eager/moved_rows_frac"] for log in run.logs) > 0
    if run.generator == "screen_refill_forks":  # its fills and probes are forks
        assert max(log["eager/fork_rows_frac"] for log in run.logs) > 0
    if run.generator.startswith("parallel"):
        assert all(log["eager/fork_rows_frac"] == log["eager/moved_rows_frac"] == 0 for log in run.logs)
        rows = run.trainer.args.per_device_train_batch_size * run.trainer.args.steps_per_generation
        assert all(log["eager/rows_used_frac"] == 1 and log["eager/branches_per_prompt"] == 0 for log in run.logs)
        assert all(log["eager/rollout_tokens"] == rows * 8 for log in run.logs)  # no EOS from a random model
    elif run.generator != "screen":  # the screen allocation samples roots only
        assert sum(log["eager/branches_per_prompt"] for log in run.logs) > 0


def test_label_aware_moves_rows_to_unsolved_prompts(run):
    if run.generator != "eager":
        pytest.skip("label-aware only")
    for call in run.recorder.calls:
        used_by = {}
        for prompt, used in zip(call["prompts"], call["eager_used"]):
            used_by.setdefault(label_of(prompt), []).append(used)
        assert sum(used_by["yes"]) == 1  # solved by its first sequence: nothing more
        assert sum(used_by["no"]) > 4  # never solved: it took rows of solved prompts
        assert len(call["prompts"]) == 16
    assert all(log["eager/rows_reallocated"] > 0 for log in run.logs)


def test_segment_credit_counts_every_token_once(run):
    """Per-token advantages w_t (Q_t - b) from the step's trees; a child's inherited prefix carries no loss."""
    if run.generator != "eager_segments":
        pytest.skip("segment credit only")
    from trainers.tree_credit import token_credit

    trainer, children = run.trainer, 0
    inputs, output, _ = run.outputs[-1]  # the last step's trees are the trainer's last rollout
    trees, rows = trainer.eager_step.rollout.trees, trainer.eager_step.row_sequences
    assert output["advantages"].dim() == 2
    mask = output["completion_mask"] * output["tool_mask"]
    rewards = {(k, s): r for (k, s), r in ((row, r) for row, r in zip(rows, run.recorder.calls[-1]["rewards"]) if row)}
    for r, row in enumerate(rows):
        if row is None:
            assert not mask[r].any()
            continue
        seq = trees[row[0]].sequences[row[1]]
        assert not mask[r, : seq.n_inherited].any() and mask[r, seq.n_inherited: len(seq.tokens)].all()
        children += seq.parent is not None
        weights, _ = token_credit(trees[row[0]], {s: v for (k, s), v in rewards.items() if k == row[0]})[row[1]]
        own = output["advantages"][r, : len(seq.tokens)]
        assert ((own != 0) <= torch.tensor([w > 0 for w in weights])).all()
    assert children > 0, "expected forks to credit"


def test_screen_spends_its_pool_on_prompts_with_a_signal(run):
    """yes prompts stop after their 2 screening rows, no prompts too (no probes), and the rest of the pool fills
    coin prompts whose screening was mixed; unused rows are skipped by TRL's log-prob pass; the loss is divided
    by the budget's tokens."""
    if run.generator != "screen":
        pytest.skip("the screen allocation only")
    filled = 0
    for call, (inputs, output, loss_batch) in zip(run.recorder.calls, run.outputs):
        used_by: dict[str, list[int]] = {}
        for prompt, used in zip(call["prompts"], call["eager_used"]):
            used_by.setdefault(prompt, []).append(used)
        assert sum(call["eager_used"]) <= 24
        for prompt, used in used_by.items():
            assert sum(used) == 2 or (label_of(prompt) == "coin" and 2 < sum(used) <= 4), (prompt, used)
            filled += sum(used) > 2
        used = torch.tensor(call["eager_used"], dtype=torch.bool)
        old = output["old_per_token_logps"]
        assert (old[~used] == 0).all() and (old[used] != 0).any(dim=1).all()
        assert float(loss_batch["num_items_in_batch"]) == 24 * 8
    assert filled > 0, "expected a mixed coin prompt to be filled"


def test_refill_forks_train_as_rows_that_repeat_their_parent_s_prefix(run):
    """Fills and probes forked from finished samples: each fork's row holds its parent's tokens up to the fork and
    its own after it; probes of never-solved prompts continue wrong samples; rows from forks reach the loss."""
    if run.generator != "screen_refill_forks":
        pytest.skip("refill forks only")
    trainer, forks = run.trainer, 0
    inputs, output, _ = run.outputs[-1]  # the last step's trees are the trainer's last rollout
    trees, rows = trainer.eager_step.rollout.trees, trainer.eager_step.row_sequences
    for r, row in enumerate(rows):
        if row is None or trees[row[0]].sequences[row[1]].parent is None:
            continue
        tree = trees[row[0]]
        seq, parent = tree.sequences[row[1]], tree.sequences[tree.sequences[row[1]].parent]
        assert parent.finished and seq.tokens[: seq.n_inherited] == parent.tokens[: seq.n_inherited]
        assert output["completion_ids"][r, : len(seq.tokens)].tolist() == seq.tokens
        if label_of(inputs[r]["prompt"]) == "no":
            assert parent.score == 0.0
        forks += 1
    assert forks > 0, "expected fills or probes forked from finished samples"


def test_dynamic_sampling_trains_on_groups_with_a_signal(run):
    """Groups whose rewards agree leave the loss batch and TRL's log-prob pass; parallel under oversample trains on
    at most its step's groups (those with a signal first), and its normaliser counts that step's tokens."""
    args = run.trainer.args
    if not args.dynamic_sampling:
        pytest.skip("dynamic sampling only")
    from trainers.loss_batch import signal_rows, step_groups

    assert len(run.logp_pass_rows) == len(run.outputs)
    for call, (inputs, output, loss_batch), logp_rows in zip(run.recorder.calls, run.outputs, run.logp_pass_rows):
        rewards = torch.tensor(call["rewards"], dtype=torch.float32)
        used = torch.tensor([row.get("eager_used", 1) for row in inputs], dtype=torch.bool)
        groups = torch.tensor([row.get("eager_group", i // args.num_generations) for i, row in enumerate(inputs)])
        signal = signal_rows(rewards, groups, used)
        kept = carrying(inputs, output, args)
        assert logp_rows == int(kept.sum()) == loss_batch["completion_ids"].shape[0] or not kept.any()
        if args.rollout_generator != "parallel":
            assert torch.equal(kept, signal)
            continue
        g, step = args.num_generations, args.rows_per_step * args.steps_per_generation // args.num_generations
        chosen = torch.tensor(step_groups(signal.view(-1, g).any(dim=1).tolist(), step)).repeat_interleave(g)
        assert torch.equal(kept, signal & chosen) and int(chosen.sum()) == step * g
        tokens = (output["completion_mask"] * output.get("tool_mask", 1))[chosen].sum()
        assert float(loss_batch["num_items_in_batch"]) == float(tokens)


def test_solved_prompt_gets_no_new_sequence(run):
    if run.generator != "eager":
        pytest.skip("label-aware only")
    segments, current = [], None
    for event in run.events:
        if event[0] == "rollout":
            current = []
            segments.append(current)
        elif current is not None:
            current.append(event)
    assert len(segments) == 2
    for events in segments:
        solved_at = next(i for i, e in enumerate(events) if e[:3] == ("verdict", "yes", 1.0))
        # The verdict comes from a background thread; the driver reads it before its next engine step
        # (allow three, for thread scheduling). After that, the "yes" prompt must get no sequence.
        steps = [i for i, e in enumerate(events) if e[0] == "step" and i > solved_at]
        cutoff = steps[2]
        late = [e for e in events[cutoff:] if e[0] == "add"]
        assert not [e for e in late if label_of(f"Question {e[1]}:") == "yes"]
        assert [e for e in late if label_of(f"Question {e[1]}:") == "no"]  # others still got new sequences


def test_verdict_baseline_advantages(run):
    """The verdict baseline: a used row's advantage is (reward - b) / (sqrt(b (1 - b)) + eps), b its baseline."""
    if run.generator != "eager_verdicts":
        pytest.skip("the verdict baseline only")
    from trainers.advantages import EPS

    first_try = 0
    for call, (inputs, output, _) in zip(run.recorder.calls, run.outputs):
        used = torch.tensor(call["eager_used"], dtype=torch.bool)
        reward = torch.tensor(call["rewards"], dtype=torch.float32)
        b = torch.tensor(call["eager_baseline"], dtype=torch.float32)
        expected = (reward - b) / (torch.sqrt(b * (1 - b)) + EPS)
        assert torch.allclose(output["advantages"][used], expected[used], atol=1e-5)
        assert (output["advantages"][~used] == 0).all()
        for prompt, u, baseline, adv in zip(call["prompts"], call["eager_used"], call["eager_baseline"],
                                            output["advantages"].tolist()):
            if u and label_of(prompt) == "yes":  # solved by its only row: the group mean would give it 0
                assert baseline == 0.5 and adv == pytest.approx(1.0, abs=1e-3)
                first_try += 1
    assert first_try > 0, "expected a 'yes' prompt (solved by its first row) in the steps"


def test_engine_follows_trainer_after_sync(run):
    """Runs last for each generator: it perturbs the weights."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    trainer = run.trainer
    llm, model = trainer.vllm_generation.llm, trainer.model
    prompts = [trainer.processing_class(text=f"Question {i}: hello")["input_ids"] for i in range(3)]
    params = SamplingParams(temperature=0.0, max_tokens=12)

    def vllm_greedy() -> list[list[int]]:
        return [list(o.outputs[0].token_ids) for o in llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts],
                                                                   params, use_tqdm=False)]

    def hf_greedy() -> list[list[int]]:
        model.eval()  # generate() in train mode with gradient checkpointing drops the cache and goes astray
        try:
            with torch.no_grad():
                return [model.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False)[0, len(p):].tolist()
                        for p in prompts]
        finally:
            model.train()

    trainer.vllm_generation.sync_weights()
    assert vllm_greedy() == hf_greedy()  # after training steps
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    stale = vllm_greedy()
    trainer.vllm_generation.sync_weights()
    assert vllm_greedy() == hf_greedy() != stale


def test_step_seconds_are_logged(run):
    walls = [log["eager/train_wall_s"] for log in run.logs]
    assert walls[0] > 0 and all(b > a for a, b in zip(walls, walls[1:]))
    for log in run.logs:
        assert log["eager/time_generation_s"] > 0 and log["eager/time_scoring_s"] >= 0
    assert sum(log["eager/time_generation_s"] + log["eager/time_scoring_s"] for log in run.logs) < walls[-1]

