"""Property: whatever the entropies, budgets hold and every child shares its parent's prefix."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollout import EagerConfig, generate
from tests.rollout.scripted import ScriptedEngine
from tests.rollout.test_driver import check_tree_invariants, script


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    high=st.sets(st.integers(0, 15), max_size=10),
    length=st.integers(1, 16),
    m=st.integers(1, 6),
    n_prompts=st.integers(1, 4),
    mode=st.sampled_from(["top2", "alternative", "resample"]),
    method=st.sampled_from(["parallel", "eager_init", "eager_adapt", "eager", "online"]),
    p99=st.booleans(),
    seed=st.integers(0, 10_000),
    solved_mask=st.integers(0, 15),
)
def test_budgets_hold_and_children_share_parent_prefix(high, length, m, n_prompts, mode, method, p99, seed,
                                                       solved_mask):
    online = method == "online"
    cfg = EagerConfig(method="eager" if online else method, online=online, max_sequences=m, entropy_threshold=0.5,
                      temperature=1.0, max_new_tokens=12, fork_mode=mode, p99_floor=p99, seed=seed)
    verifier = (lambda i, ids: bool(solved_mask >> i & 1)) if cfg.method == "eager" else None
    prompts = [[1] * (3 + i) for i in range(n_prompts)]
    r = generate(ScriptedEngine(script(high, length)), prompts, cfg, verifier=verifier)
    total = sum(t.n_sequences for t in r.trees)
    cap = {"parallel": m, "eager_init": m, "eager_adapt": 4 * m, "eager": 2 * m}[cfg.method]
    assert total <= n_prompts * m  # the pool never grows: saved budget is only moved
    for t in r.trees:
        assert 1 <= t.n_sequences <= cap
        if cfg.method in ("parallel", "eager_init"):
            assert t.n_sequences == m if cfg.method == "parallel" else t.n_sequences <= m
        check_tree_invariants(t, 12)
        assert len(t.branches) == sum(1 for s in t.sequences if s.parent is not None)
