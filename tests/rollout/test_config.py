"""Which settings act under which method and allocation (`rollout.config.inert_settings`)."""

from rollout.config import EagerConfig, inert_settings


def test_inert_settings_name_what_the_method_and_allocation_ignore():
    screen = EagerConfig(method="eager", online=True, allocation="screen", max_sequences=8)
    assert set(inert_settings(screen, ["entropy_threshold", "max_retries", "screen_roots", "refill_at"])) == {
        "entropy_threshold", "max_retries", "refill_at"}
    forks = EagerConfig(method="eager", online=True, allocation="screen", max_sequences=8, screen_forks=2,
                        fill_with="forks")
    assert inert_settings(forks, ["entropy_threshold", "refill_at", "fill_size"]) == {}
    passes = EagerConfig(method="eager_adapt", max_sequences=8)
    assert set(inert_settings(passes, ["adapt_extra_cap", "extra_cap", "stop_rule", "fill_size", "allocation"])) == {
        "extra_cap", "stop_rule", "fill_size", "allocation"}
    assert "pass_start_limit" in inert_settings(passes, ["pass_start_limit"])  # not online
    assert inert_settings(EagerConfig(method="parallel"), ["fork_mode"]) == {"fork_mode": "parallel never forks"}
