"""`eager-eval --experiments eglr` end to end on the transformers backend, and the recap's oracles."""

from __future__ import annotations

import json

import pytest

from evaluation import recap
from evaluation.cli import main
from evaluation.eglr import plan
from evaluation.metrics import eglr_oracles


def _args(model, data, out, *extra):
    return ["--model_name", str(model), "--data_name", str(data), "--output_dir", str(out), "--max_model_len", "1024",
            "--temperature", "0.8", "--seed", "7", "--backend", "hf", "--experiments", "eglr", "--limit", "2",
            "--eglr_spans", "1,2", "--eglr_samples", "2", "--max_new_tokens", "8", "--entropy_threshold", "0.5",
            *extra]


@pytest.fixture(scope="module")
def eglr_run(tiny_model, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eglr") / "run"
    args = _args(tiny_model, shared_data / "aime_2025.jsonl", out)
    assert main(args) == 0
    (path,) = out.glob("*_eglr_results_*.json")
    return out, args, path


@pytest.mark.slow
def test_every_pool_is_generated_and_labelled(eglr_run):
    _, _, path = eglr_run
    data = json.loads(path.read_text())
    assert data["experiment"] == "eglr" and data["status"]["state"] == "COMPLETED"
    assert data["params"]["eglr_spans"] == [1, 2] and data["params"]["eglr_samples"] == 2
    recs = data["entropy-aware-generations"]
    assert [r["index"] for r in recs] == [0, 1]
    for r in recs:
        labels, seqs = r["eglr"], r["tree"]["sequences"]
        assert len(labels) == len(seqs) == 3 * 2 + 2 * 2 + 3  # plain 3T, T per span, a greedy rollout per span
        count = {p: sum(p in lab["pools"] for lab in labels) for p in ("temperature", "layer", "joint")}
        assert count == {"temperature": 6, "layer": 3, "joint": 6}
        assert [lab["tokens"] for lab in labels] == [len(s["token_ids"]) for s in seqs]
        assert sum(lab["tokens"] for lab in labels) == r["tokens_generated"]
        # the joint pool's plain row is the temperature pool's first T samples, not extra ones
        plain = [lab["sample"] for lab in labels if lab["span"] == 0 and "joint" in lab["pools"]]
        assert plain == [0, 1]
        assert sorted((lab["span"], lab["sample"]) for lab in labels if "joint" in lab["pools"]) == [
            (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert data["extra"]["recursion"]["last_run"]["gated"] > 0
    for key in ("temperature_oracle", "layer_oracle", "joint_oracle", "joint_oracle_gain", "pass_rate_L2"):
        assert key in data["results"]


@pytest.mark.slow
def test_recap_prints_the_eglr_table(eglr_run, capsys):
    out, _, _ = eglr_run
    assert recap.main([str(out), "--no_plots"]) == 0
    text = capsys.readouterr().out
    assert "temperature-only oracle" in text and "(6 rollouts" in text and "(3 rollouts" in text


@pytest.mark.slow
def test_running_again_generates_nothing(eglr_run):
    out, args, path = eglr_run
    before = path.read_text()
    assert main(args) == 0
    after = json.loads(path.read_text())
    assert after["entropy-aware-generations"] == json.loads(before)["entropy-aware-generations"]


@pytest.mark.slow
def test_eglr_needs_the_hf_backend_and_valid_spans(tiny_model, shared_data, tmp_path, capsys):
    data = shared_data / "aime_2025.jsonl"
    with pytest.raises(SystemExit):
        main(_args(tiny_model, data, tmp_path / "a", "--backend", "vllm"))
    assert "--backend hf" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_args(tiny_model, data, tmp_path / "b", "--eglr_spans", "2,2"))
    assert "eglr_spans" in capsys.readouterr().err
    assert main(_args(tiny_model, data, tmp_path / "c", "--eglr_spans", "1,5")) == 2  # the tiny model has 2 layers
    assert "2 decoder layers" in capsys.readouterr().err


def test_oracles_on_hand_made_records():
    def lab(span, sample, pools, tokens=10):
        return {"span": span, "sample": sample, "pools": pools, "tokens": tokens}

    pools = [lab(0, 0, ["temperature", "joint"]), lab(0, 1, ["temperature"]), lab(3, 0, ["joint"]),
             lab(0, None, ["layer"]), lab(3, None, ["layer"])]
    records = [
        {"eglr": pools, "scores": [0.0, 0.0, 1.0, 0.0, 1.0]},  # only the recursion finds it
        {"eglr": pools, "scores": [0.0, 1.0, 0.0, 0.0, 0.0]},  # only a second plain sample finds it
    ]
    out = eglr_oracles(records)
    assert out["temperature_oracle"] == 0.5 and out["joint_oracle"] == 0.5 and out["layer_oracle"] == 0.5
    assert out["joint_oracle_gain"] == 0.0 and out["temperature_rollouts"] == 2 and out["joint_tokens_per_prompt"] == 20
    assert out["pass_rate_L3"] == 0.5 and out["pass_rate_L0"] == 0.25
    assert [(r.span, r.greedy, r.rollouts) for r in plan([2, 4], 3)] == [
        (0, False, 9), (2, False, 3), (4, False, 3), (0, True, 1), (2, True, 1), (4, True, 1)]


@pytest.mark.slow
def test_eager_init_with_recursion_forks(tiny_model, shared_data, tmp_path):
    out = tmp_path / "fork"
    args = _args(tiny_model, shared_data / "aime_2025.jsonl", out, "--experiments", "eager_init", "--fork_mode",
                 "recursion", "--eglr_spans", "1", "--max_sequences", "3")
    assert main(args) == 0
    (path,) = out.glob("*_aware_results_*.json")
    data = json.loads(path.read_text())
    assert data["params"]["recursion_span"] == 1 and "eglr_spans" not in data["params"]
    branches = [b for r in data["entropy-aware-generations"] for b in r["recorded_branches"]]
    assert branches and all(b["recursion_span"] == 1 for b in branches)
    assert all(b["branch_token_id"] != b["original_token_id"] for b in branches)


def test_a_directory_check_ignores_only_what_every_experiment_to_run_ignores():
    from evaluation.store import ignored_by_all

    label_aware = {"stop_rule", "solved_min_correct", "solved_min_incorrect", "signal_easy_k", "on_solved"}
    assert ignored_by_all(["eglr"]) == {"max_sequences", "fork_mode", *label_aware}
    assert ignored_by_all(["parallel"]) == {"entropy_threshold", "fork_mode", *label_aware}
    assert ignored_by_all(["parallel", "eager_init", "eager_adapt"]) == label_aware
    assert ignored_by_all(["parallel", "eager_init", "eager_adapt", "eager"]) == set()
