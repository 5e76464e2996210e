"""Records in the seed's layout, their round trip to trees, and the results file as a checkpoint."""

from __future__ import annotations

import json

import pytest

from evaluation.records import full_entropies, record_to_tree, tree_to_record
from evaluation.store import (
    DirectoryLock,
    ResultsError,
    ResultsFile,
    check_directory,
    read_results,
    results_filename,
)
from rollout.types import INHERITED, BranchEvent, PromptTree, Sequence


class WordTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"t{i}" for i in ids)


def hand_tree() -> PromptTree:
    """Root [5 6 7 8]; child forked at position 1 (rank-2 token 9) then [10]."""
    root = Sequence(0, [5, 6, 7, 8], [-0.1] * 4, [0.1, 2.5, 0.3, 0.2], finished=True, finish_reason="stop", forced=[1])
    child = Sequence(1, [5, 9, 10], [-0.1, -1.2, -0.3], [INHERITED, 2.5, 0.4], parent=0, n_inherited=1,
                     forced=[1], finished=True, finish_reason="length")
    branch = BranchEvent(seq=0, step=1, position=1, entropy=2.5, threshold=2.0, original_token=6, branch_token=9,
                         new_seq=1)
    return PromptTree(3, [1, 2], budget=4, threshold=2.0, sequences=[root, child], branches=[branch])


def make_record(index: int = 3) -> dict:
    tree = hand_tree()
    texts = [WordTokenizer().decode(s.tokens) for s in tree.sequences]
    return tree_to_record(tree, index, "What is 1+1?", "2", WordTokenizer(), texts, ["2", None], [1.0, 0.0], 0)


def header(**params) -> dict:
    base = {"model_name": "m", "temperature": 0.6, "entropy_threshold": 2.0, "max_sequences": 4, "seed": 55}
    return {"experiment_name": "run", "experiment": "eager_init", "params": {**base, **params},
            "data": {"data_name": "d.jsonl", "fingerprint": "abc", "targets": ["2"]}}


def test_record_has_the_seed_fields_and_exact_counts():
    r = make_record()
    for key in ("prompt", "generated_sequences", "target", "extracted_answers", "generations", "entropies",
                "recorded_branches"):
        assert key in r
    assert r["generated_sequences"] == 2
    assert r["tokens_generated"] == 4 + 2  # the child's shared prefix counted once
    assert r["entropies"][1][0] == -1.0
    b = r["recorded_branches"][0]
    assert (b["seq_idx"], b["new_seq_idx"], b["man_token_original"], b["man_token_branch"]) == (0, 1, "t6", "t9")
    assert b["last_generated_chars"] == "t5"
    json.dumps(r)  # plain JSON


def test_record_round_trips_to_the_same_tree():
    r = json.loads(json.dumps(make_record()))
    tree, orig = record_to_tree(r, prompt_index=3), hand_tree()
    assert [s.tokens for s in tree.sequences] == [s.tokens for s in orig.sequences]
    assert [s.entropies for s in tree.sequences] == [s.entropies for s in orig.sequences]
    assert [(s.parent, s.n_inherited, s.forced, s.finish_reason) for s in tree.sequences] == [
        (s.parent, s.n_inherited, s.forced, s.finish_reason) for s in orig.sequences
    ]
    assert tree.branches == orig.branches
    assert tree.tokens_generated == orig.tokens_generated
    assert (tree.prompt_ids, tree.budget, tree.threshold) == (orig.prompt_ids, orig.budget, orig.threshold)


def test_full_entropies_fill_inherited_positions_from_the_parent():
    assert full_entropies(make_record(), 1) == [0.1, 2.5, 0.4]
    seed_style = {"entropies": [[0.1, 0.2], [-1, 0.5]]}  # the seed's files have no parent links
    assert full_entropies(seed_style, 1) == [0.5]


def test_seed_file_names():
    assert results_filename("run", "parallel", 2.2) == "run_default_results.json"
    assert results_filename("run", "eager_init", 2.2) == "run_aware_results__th2.2.json"
    assert results_filename("run", "eager", 2.2) == "run_aware_more_budget_results__th2.2.json"
    assert results_filename("run", "eager_adapt", 2) == "run_aware_easy_more_budget_results__th2.0.json"


def test_results_file_resumes_with_every_prompt_once(tmp_path):
    path = tmp_path / "r.json"
    store = ResultsFile.open(path, header(), total=3, overwrite=False)
    store.add(make_record(2))
    store.add(make_record(0))
    store.write(elapsed_s=1.5)
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed over the target
    data = read_results(path)
    assert data["status"]["state"] == "IN_PROGRESS" and data["status"]["progress"] == "2/3"
    assert [r["index"] for r in data["entropy-aware-generations"]] == [0, 2]
    assert data["results"]["pass_at_1"] == 1.0

    again = ResultsFile.open(path, header(), total=3, overwrite=False)
    assert again.done == {0, 2} and again.elapsed_before == 1.5
    with pytest.raises(RuntimeError, match="counted twice"):
        again.add(make_record(2))
    again.add(make_record(1))
    assert sorted(again.records[1]) == ["extracted_answers", "index", "lowest_centroid", "scores", "tokens_generated"]
    again.write(elapsed_s=1.0)
    data = read_results(path)
    assert data["status"]["state"] == "COMPLETED"
    assert data["extra"]["generation_time_so_far (s)"] == pytest.approx(2.5)
    assert data["extra"]["run_id"] == store.extra["run_id"]


def test_other_parameters_are_refused_and_nothing_is_touched(tmp_path):
    path = tmp_path / "r.json"
    store = ResultsFile.open(path, header(), total=2, overwrite=False)
    store.add(make_record(0))
    store.write(0.1)
    before = path.read_bytes()
    with pytest.raises(ResultsError, match="temperature") as err:
        ResultsFile.open(path, header(temperature=0.7), total=2, overwrite=False)
    assert str(path) in str(err.value)
    assert path.read_bytes() == before
    fresh = ResultsFile.open(path, header(temperature=0.7), total=2, overwrite=True)
    assert fresh.done == set() and not path.exists()
    assert len(list(tmp_path.glob("r.json.*.stale"))) == 1  # set aside, not deleted


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"\xff\xfe garbage", lambda b: b"[]"])
def test_a_damaged_file_is_an_error_naming_it(tmp_path, damage):
    path = tmp_path / "r.json"
    store = ResultsFile.open(path, header(), total=2, overwrite=False)
    store.add(make_record(0))
    store.write(0.1)
    path.write_bytes(damage(path.read_bytes()))
    before = path.read_bytes()
    with pytest.raises(ResultsError, match="r.json"):
        ResultsFile.open(path, header(), total=2, overwrite=False)
    with pytest.raises(ResultsError, match="r.json"):
        check_directory(tmp_path, header(), overwrite=False)
    assert path.read_bytes() == before


def test_repeated_prompts_in_a_file_are_refused(tmp_path):
    path = tmp_path / "r.json"
    store = ResultsFile.open(path, header(), total=2, overwrite=False)
    store.add(make_record(0))
    store.write(0.1)
    data = json.loads(path.read_text())
    data["entropy-aware-generations"] *= 2
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="repeated"):
        ResultsFile.open(path, header(), total=2, overwrite=False)


def test_directory_with_other_results_is_refused_unless_overwrite(tmp_path):
    other = ResultsFile.open(tmp_path / "a.json", header(model_name="other"), total=1, overwrite=False)
    other.write(0.0)
    same_but_threshold = ResultsFile.open(tmp_path / "b.json", header(entropy_threshold=3.0), total=1, overwrite=False)
    same_but_threshold.write(0.0)
    with pytest.raises(ResultsError, match="model_name") as err:
        check_directory(tmp_path, header(), overwrite=False)
    assert "a.json" in str(err.value) and "--overwrite" in str(err.value)
    check_directory(tmp_path, header(), overwrite=True)
    assert not (tmp_path / "a.json").exists() and (tmp_path / "b.json").exists()  # thresholds may share a dir
    check_directory(tmp_path, header(), overwrite=False)


def test_one_writer_per_directory(tmp_path):
    with DirectoryLock(tmp_path):
        with pytest.raises(ResultsError, match="another eager-eval"):
            with DirectoryLock(tmp_path):
                pass
    with DirectoryLock(tmp_path):
        pass
