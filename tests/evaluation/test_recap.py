"""eager-recap on files of the seed repository's own layout, and its errors."""

from __future__ import annotations

import json

from evaluation import recap


def seed_file(path, experiment_key: str, records: list[dict]) -> None:
    """A results file as the seed writes it: entropies, answers and branches stored as Python strings."""
    data = {
        "experiment_name": "2025-10-01_12-00-01",
        "params": {"model_name": "Qwen/Qwen3-4B", "temperature": 0.6, "entropy_threshold": 2.5, "max_sequences": 32,
                   "seed": 55},
        "data": {"data_name": "opencompass/AIME2025", "num_prompts": len(records)},
        "status": {"state": "COMPLETED", "completed_sequences": len(records), "total_sequences": len(records),
                   "progress": f"{len(records)}/{len(records)}"},
        "extra": {"notes": "", "generation_time_so_far (s)": 12.0},
        "results": {"avg_acc": 0.0, "pass_at_1": 0.0, "cons_at_max": 0.0},
        experiment_key: records,
    }
    path.write_text(json.dumps(data, indent=4))


def seed_record(target, answers, entropies, branches=()):
    return {"prompt": "p", "generated_sequences": len(answers), "target": target,
            "extracted_answers": str(answers), "generations": [f"\\boxed{{{a}}}" for a in answers],
            "entropies": [str(e) for e in entropies], "recorded_branches": [str(b) for b in branches]}


def test_recap_reads_and_scores_the_seeds_files(tmp_path, capsys):
    run = tmp_path / "2025-10-01_12-00-01"
    run.mkdir()
    branch = {"seq_idx": 0, "gen_step": 1, "auto_selected_token": " a", "entropy": 2.6, "entropy_threshold": 2.5,
              "man_token_original": " a", "man_token_branch": " b", "new_seq_idx": 1, "last_generated_chars": "x"}
    seed_file(run / f"{run.name}_default_results.json", "default-generations", [
        seed_record("70", ["70", "12"], [[0.1, 0.2, 0.3], [0.5, 0.6]]),
        seed_record("588", ["1", "2"], [[0.1], [0.2]]),
    ])
    seed_file(run / f"{run.name}_aware_results__th2.5.json", "entropy-aware-generations", [
        seed_record("70", ["70", "70"], [[0.1, 2.6, 0.3], [-1, 2.6, 0.4]], [branch]),
        seed_record("588", ["588"], [[0.1, 0.2]]),
    ])
    assert recap.main([str(run)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "0.500 | 0.500 | 0.250 | 3.5 |" in rows["parallel"]  # Pass@k, Cons@k, PassRate, #T ((5 + 2) / 2)
    assert "1.000 | 1.000 | 1.000 | 3.5 | +0% | 1.50 |" in rows["eager_init th=2.5"]  # the -1 is not counted
    assert (run / "plots" / "pass_at_k_vs_tokens.png").exists()
    assert list((run / "plots").glob("entropy_trace_eager_init*_prompt0.png"))


def test_recap_errors_name_the_problem(tmp_path, capsys):
    assert recap.main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert recap.main([str(tmp_path)]) == 2
    assert "no results files" in capsys.readouterr().err
    (tmp_path / "run_default_results.json").write_text('{"params": {"model_na')
    assert recap.main([str(tmp_path), "--no_plots"]) == 2
    err = capsys.readouterr().err
    assert "run_default_results.json" in err and "truncated" in err


def test_the_trace_shows_the_prompt_with_most_branches():
    from evaluation.plots import pick_branchy_record

    assert pick_branchy_record([]) is None
    records = [{"index": 0, "recorded_branches": [1]}, {"index": 1, "recorded_branches": [1, 2]},
               {"index": 2, "recorded_branches": [3, 4]}]
    assert pick_branchy_record(records)["index"] == 1  # ties go to the first
