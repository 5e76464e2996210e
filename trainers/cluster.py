"""What a training run meets on a cluster: W&B run names, a vLLM server that dies, and preemption.

- `wandb_defaults`: W&B runs carry the generator and its parameters (project, group, run name).
- `server_failure`: a step whose vLLM server stopped answering fails with the URL, the step, and
  the checkpoint to resume from (nothing of the failed step reaches the model or the disk).
- `kill_if_testing`: the TEST-ONLY hook that kills a run at a fixed point of a fixed step, so
  kill-and-resume is tested without a timer racing the run.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from rollout.server_engine import LAUNCH_HINT, ServerError

# TEST-ONLY, never set in real use: with EAGER_RL_TEST_KILL_IN_STEP=N the trainer's process sends itself
# SIGKILL in training step N (1-based), once that step's rollouts are generated and scored, before its update.
TEST_KILL_ENV = "EAGER_RL_TEST_KILL_IN_STEP"


def kill_if_testing(step: int) -> None:
    """SIGKILL this process when `TEST_KILL_ENV` names `step` (what a preemption does: no handler runs)."""
    at = os.environ.get(TEST_KILL_ENV)
    if at is not None and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def server_failure(exc: BaseException, url: str, step: int, output_dir: str) -> ServerError | None:
    """The error a step raises when its vLLM server failed it (None: `exc` is something else).

    The server fails a step in one of two places: TRL's client pushing the weights (a `requests` connection
    error) or a rollout stream (`ServerError`). The step's update never ran, so the last checkpoint holds
    everything finished; the message names it and the line that resumes from it.
    """
    import requests

    if not (isinstance(exc, ServerError) or (isinstance(exc, requests.exceptions.ConnectionError)
                                             and _to_server(exc, url))):
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    saved = (f"The last checkpoint, {last}, is intact: once the server answers again, resume with "
             f"--resume_from_checkpoint {last} (the trainer pushes its weights before the first rollout)."
             if last else f"No checkpoint was saved before it (output_dir {output_dir}): restart the server and "
             "the run, and set save_strategy/save_steps to keep finished steps.")
    return ServerError(f"the vLLM server at {url} failed in training step {step}, which is not applied: {exc}. "
                       f"{saved} ({LAUNCH_HINT})")


def _to_server(exc: Any, url: str) -> bool:
    """Whether a `requests` connection error was a request to the server at `url` (TRL's client's), not one a
    reward function made elsewhere: by the failed request's URL, or the host and port urllib3 names."""
    request = getattr(exc, "request", None)
    if request is not None and getattr(request, "url", None):
        return request.url.startswith(url.rstrip("/"))
    host, _, port = url.split("://")[-1].rstrip("/").partition(":")
    return f"host='{host}', port={port or 80})" in str(exc) or url.rstrip("/") in str(exc)


def wandb_defaults(args: Any) -> None:
    """W&B runs carry the generator and its parameters: a project, a group per generator setting, a run name.

    transformers' W&B callback takes the group from WANDB_RUN_GROUP only. A group the user set is
    kept; one set here for an earlier trainer of this process is replaced.
    """
    global _group_set_here
    if "wandb" not in (args.report_to or []):
        return
    os.environ.setdefault("WANDB_PROJECT", "eager-rl")
    if os.environ.get("WANDB_RUN_GROUP") in (None, _group_set_here):
        os.environ["WANDB_RUN_GROUP"] = _group_set_here = args.run_tag
    if args.run_name is None or args.run_name == args.output_dir:
        args.run_name = f"{args.run_tag}-seed{args.seed}"


_group_set_here: str | None = None
