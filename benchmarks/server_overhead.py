"""What a vLLM server costs EAGer: the same rollout batch colocated and through `vllm serve`.

The arithmetic model, 64 held-out prompts x M = 8, threshold 0.6, T = 1, 128 new tokens,
`resample` forks. Two engines on one machine: the colocated `vllm.LLM` in this process (as
TRL's colocate mode runs it) and a `vllm serve` subprocess (the CPU build, as
`recipes.serve` starts it, with the colocated engine's width), driven through
`rollout.server_engine`. Methods: parallel (n = M independent samples, streamed like EAGer's
sequences) and online eager (stop at the first right answer, the freed budget to unsolved
prompts); through the server also `trl_parallel`, what TRL's server mode does for
`rollout_generator: parallel`: one `VLLMClient.generate` call, n = M per prompt, not streamed.
Beside each run: the CPU seconds the server's API process, its engine processes and this client
process spent in it (two cores in all here). Each engine is warmed up; the runs alternate
`--repeats` times and each (engine, method) keeps its fastest. The trees are compared too: the
same seeds must give the same trees on both engines.

Last lines, in this order:
`server_time_ratio` (online eager through the server / colocated; target <= 1.5),
`server_parallel_ratio` (online eager / TRL's parallel, both through the server; target <= 0.7).

    python -m benchmarks.server_overhead [--prompts 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

from benchmarks.common import arithmetic_batch  # noqa: E402  (after the engine's environment is set)
from rollout.server_engine import STREAM_INTERVAL  # noqa: E402

METHODS = {"parallel": dict(method="parallel"), "eager": dict(method="eager", online=True)}


def trees(result) -> list:
    return [[(s.tokens, s.parent, s.finish_reason) for s in t.sequences] for t in result.trees]


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the server's API process, its engine processes and this client process."""
    import os

    import psutil

    api = psutil.Process(server_pid)
    times = {"api": sum(api.cpu_times()[:2]), "engine": 0.0, "client": sum(os.times()[:2])}
    for child in api.children(recursive=True):
        try:
            times["engine"] += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return times


def server_steps(url: str) -> int:
    """Engine steps the server has run so far (the count of its per-step token histogram)."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics") as resp:
        metrics = resp.read().decode()
    return int(float(re.search(r"^vllm:iteration_tokens_total_count\{[^}]*\} (\S+)", metrics, re.M).group(1)))


def trl_parallel(url: str, prompts: list[list[int]], args: argparse.Namespace) -> tuple[float, int]:
    """TRL's server-mode sampling for `rollout_generator: parallel`: (wall seconds, completion tokens)."""
    import trainers  # noqa: F401  (TRL's vLLM-range warning, silenced as the trainer does)
    from trl.generation.vllm_client import VLLMClient

    client = VLLMClient(base_url=url)
    start = time.perf_counter()
    out = client.generate(prompts=prompts, n=args.max_sequences, temperature=1.0, max_tokens=args.max_new_tokens,
                          logprobs=0, generation_kwargs={"seed": args.seed})
    wall = time.perf_counter() - start
    client.session.close()
    return wall, sum(len(c) for c in out["completion_ids"])


def measure(engines: dict, server, prompts: list[list[int]], verifier, args: argparse.Namespace) -> dict:
    """Each (engine, method)'s fastest of `args.repeats` runs, with its figures; TRL's parallel through the server."""
    from rollout import EagerConfig, generate

    common = dict(max_sequences=args.max_sequences, entropy_threshold=args.threshold, temperature=1.0,
                  max_new_tokens=args.max_new_tokens, fork_mode="resample", seed=args.seed)
    for engine in engines.values():  # warm-up
        generate(engine, prompts[:4], EagerConfig(method="parallel", max_sequences=2, max_new_tokens=16))
    best: dict[tuple[str, str], dict] = {}
    for _ in range(args.repeats):
        for name, fields in METHODS.items():
            cfg = EagerConfig(**common, **fields)
            for where, engine in engines.items():
                steps0 = server_steps(server.url)
                cpu0, start = cpu_seconds(server.proc.pid), time.perf_counter()
                result = generate(engine, prompts, cfg, verifier=verifier if cfg.method == "eager" else None)
                wall, cpu1 = time.perf_counter() - start, cpu_seconds(server.proc.pid)
                served = server_steps(server.url) - steps0  # to within the last step (its stats trail its tokens)
                if (where, name) not in best or wall < best[(where, name)]["wall_s"]:
                    best[(where, name)] = dict(wall_s=wall, steps=result.engine_steps, server_steps=served,
                                               tokens=result.tokens_generated, sequences=result.n_sequences,
                                               trees=trees(result), cpu={k: cpu1[k] - cpu0[k] for k in cpu0})
        wall, tokens = trl_parallel(server.url, prompts, args)
        if ("server", "trl_parallel") not in best or wall < best[("server", "trl_parallel")]["wall_s"]:
            best[("server", "trl_parallel")] = dict(wall_s=wall, steps=0, server_steps=None, tokens=tokens, cpu=None,
                                                    sequences=len(prompts) * args.max_sequences, trees=None)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max_sequences", type=int, default=8)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stream_interval", type=int, default=STREAM_INTERVAL,
                    help="tokens per streamed chunk (the adapter's stream_interval)")
    ap.add_argument("--server_args", default="", help="more `vllm serve` flags, space-separated")
    args = ap.parse_args(argv)

    from recipes.serve import LocalServer, free_port
    from rollout.server_engine import ServerEngine
    from rollout.vllm_engine import VLLMEngine, build_llm

    model, _, _, prompts, verifier = arithmetic_batch(args.prompts)
    colocated = VLLMEngine(build_llm(model, dtype="float32", max_model_len=256, seed=args.seed))
    width = colocated.max_running
    log = Path(tempfile.mkdtemp(prefix="eager-server-")) / "server.log"
    with LocalServer(model, free_port(), log=log, max_model_len=256, dtype="float32",
                     extra=["--max-num-seqs", str(width), *args.server_args.split()]) as server:
        remote = ServerEngine(server.url, model=model, stream_interval=args.stream_interval)
        try:
            best = measure({"colocated": colocated, "server": remote}, server, prompts, verifier, args)
        finally:
            remote.close()
    print(f"model={model} prompts={args.prompts} M={args.max_sequences} threshold={args.threshold} "
          f"max_new_tokens={args.max_new_tokens} engine_width={width} stream_interval={args.stream_interval} "
          f"server_args={args.server_args!r} "
          f"repeats={args.repeats} server_log={log}")
    for (where, name), f in sorted(best.items()):
        cpu = " ".join(f"cpu_{k}_s={v:.2f}" for k, v in (f["cpu"] or {}).items())
        print(f"{where} {name}: wall_s={f['wall_s']:.3f} engine_steps={f['steps']} "
              f"server_engine_steps={f['server_steps']} tokens={f['tokens']} "
              f"sequences={f['sequences']} {cpu}")
    for name in METHODS:
        print(f"{name}_same_trees={best[('server', name)]['trees'] == best[('colocated', name)]['trees']}")
    print(f"colocated_eager_parallel_ratio="
          f"{best[('colocated', 'eager')]['wall_s'] / best[('colocated', 'parallel')]['wall_s']:.3f}")
    print(f"server_parallel_time_ratio="
          f"{best[('server', 'parallel')]['wall_s'] / best[('colocated', 'parallel')]['wall_s']:.3f}")
    print(f"server_time_ratio={best[('server', 'eager')]['wall_s'] / best[('colocated', 'eager')]['wall_s']:.3f}")
    print(f"server_streamed_parallel_ratio="
          f"{best[('server', 'eager')]['wall_s'] / best[('server', 'parallel')]['wall_s']:.3f}")
    print(f"server_parallel_ratio="
          f"{best[('server', 'eager')]['wall_s'] / best[('server', 'trl_parallel')]['wall_s']:.3f}")


if __name__ == "__main__":
    main()
