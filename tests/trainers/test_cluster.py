"""The error a step raises when its vLLM server fails it: what it names, with and without a checkpoint."""

from __future__ import annotations

import requests

from rollout.server_engine import ServerError
from trainers.cluster import server_failure

URL = "http://10.0.0.7:8000"


def test_a_dead_server_names_its_url_the_step_and_the_checkpoint_to_resume_from(tmp_path):
    for name in ("checkpoint-4", "checkpoint-12"):
        (tmp_path / name).mkdir()
    refused = requests.exceptions.ConnectionError(  # as requests raises it for TRL's client
        "HTTPConnectionPool(host='10.0.0.7', port=8000): Max retries exceeded with url: /update_named_param/",
        request=requests.Request("POST", f"{URL}/update_named_param/").prepare())
    unnamed = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='10.0.0.7', port=8000): Max retries exceeded with url: /get_world_size/")
    for exc in (ServerError("connection reset mid-stream"), refused, unnamed):
        error = server_failure(exc, URL, 13, str(tmp_path))
        assert isinstance(error, ServerError)
        text = str(error)
        assert URL in text and "training step 13" in text and str(exc) in text
        assert f"--resume_from_checkpoint {tmp_path / 'checkpoint-12'}" in text  # the last one, not the first


def test_without_a_checkpoint_it_says_so_and_how_to_keep_steps(tmp_path):
    text = str(server_failure(ServerError("refused"), URL, 1, str(tmp_path / "out")))
    assert "No checkpoint was saved" in text and "save_steps" in text


def test_other_errors_are_not_blamed_on_the_server(tmp_path):
    assert server_failure(ValueError("bad reward"), URL, 2, str(tmp_path)) is None
    judge = requests.exceptions.ConnectionError("HTTPSConnectionPool(host='judge.example.com', port=443)",
                                                request=requests.Request("POST", "https://judge.example.com/").prepare())
    assert server_failure(judge, URL, 2, str(tmp_path)) is None  # a reward's own remote call
    assert server_failure(ConnectionRefusedError("refused"), URL, 2, str(tmp_path)) is None
