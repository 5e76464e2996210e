"""Generated tokens per second: plain vLLM sampling vs eager_init vs a per-token text loop.

Same random-weight Qwen2 (~60M parameters, built in code), same prompts, same engine, one run.
  (a) plain: `LLM.generate` with n = M samples per prompt and top-20 log-probs, on token ids.
  (b) eager_init: this project's step driver (forks as new requests, prefix cache, token ids).
  (c) per-token loop: the paper's reference approach: one `generate(max_tokens=1)` call per
      token for every live sequence, re-submitting the decoded text each time.
Runs alternate (a) and (b) `--repeats` times and keep each one's best, so load from other
processes on the machine hits both alike. Prints `name=value` lines, ending with
`eager_vs_plain` and `eager_vs_per_token_loop`.

    python -m benchmarks.rollout_throughput
"""

from __future__ import annotations

import argparse
import time

from recipes.engine_env import cpu_engine_env

cpu_engine_env(kv_cache_gib=4)


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer over `vocab_size` made-up words, so any token id decodes and re-encodes exactly."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1}
    vocab.update({f"w{i}": i for i in range(2, vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")


def plain(llm, prompts, m, args) -> tuple[int, float]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    sp = SamplingParams(n=m, temperature=args.temperature, max_tokens=args.max_new_tokens, logprobs=20,
                        detokenize=False, seed=args.seed)
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sp, use_tqdm=False)
    dt = time.perf_counter() - t0
    return sum(len(c.token_ids) for o in outs for c in o.outputs), dt


def eager(engine, prompts, m, args) -> tuple[int, float, object]:
    from rollout import EagerConfig, generate

    cfg = EagerConfig(method="eager_init", max_sequences=m, entropy_threshold=args.threshold,
                      temperature=args.temperature, max_new_tokens=args.max_new_tokens, fork_mode="top2",
                      seed=args.seed)
    t0 = time.perf_counter()
    res = generate(engine, prompts, cfg)
    return res.tokens_generated, time.perf_counter() - t0, res


def per_token_loop(llm, tokenizer, prompts, m, n_tokens, args) -> tuple[int, float]:
    """Every step, for every live sequence: decode it to text, re-tokenise the text, generate one token."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    sp = SamplingParams(temperature=args.temperature, max_tokens=1, logprobs=20, seed=args.seed, detokenize=False)
    texts = [tokenizer.decode(p) for p in prompts for _ in range(m)]
    made = 0
    t0 = time.perf_counter()
    for _ in range(n_tokens):
        ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
        outs = llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], sp, use_tqdm=False)
        for k, o in enumerate(outs):
            texts[k] += " " + tokenizer.decode(o.outputs[0].token_ids)
            made += 1
    return made, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max_sequences", type=int, default=8)
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--prompt_len", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--threshold", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--loop_prompts", type=int, default=4, help="(c) is slow: fewer prompts and tokens")
    ap.add_argument("--loop_tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import numpy as np

    from recipes.tiny_model import count_parameters, random_qwen2  # noqa: F401
    from rollout.vllm_engine import VLLMEngine, build_llm

    tok = synthetic_tokenizer(32768)
    model_dir = random_qwen2("60m", tokenizer=tok)
    llm = build_llm(str(model_dir), dtype="float32", max_model_len=args.prompt_len + args.max_new_tokens + 64,
                    seed=args.seed)
    engine = VLLMEngine(llm)
    rng = np.random.default_rng(args.seed)
    prompts = [rng.integers(2, 32768, size=args.prompt_len).tolist() for _ in range(args.prompts)]
    m = args.max_sequences
    plain(llm, prompts[:2], 2, args)  # warm-up: first calls allocate
    best_plain, best_eager = 0.0, 0.0
    for _ in range(args.repeats):
        n, dt = plain(llm, prompts, m, args)
        best_plain = max(best_plain, n / dt)
        n_e, dt_e, res = eager(engine, prompts, m, args)
        best_eager = max(best_eager, n_e / dt_e)
    print(f"model_params={count_parameters_of(model_dir)}")
    print(f"prompts={args.prompts} max_sequences={m} max_new_tokens={args.max_new_tokens}")
    print(f"plain_tokens={n} plain_tokens_per_s={best_plain:.1f}")
    print(f"eager_tokens={n_e} eager_sequences={res.n_sequences} eager_branches={res.n_branches} "
          f"eager_tokens_per_s={best_eager:.1f}")
    n_l, dt_l = per_token_loop(llm, tok, prompts[: args.loop_prompts], m, args.loop_tokens, args)
    loop_tps = n_l / dt_l
    print(f"per_token_loop_tokens={n_l} per_token_loop_tokens_per_s={loop_tps:.1f}")
    print(f"eager_vs_plain={best_eager / best_plain:.3f}")
    print(f"eager_vs_per_token_loop={best_eager / loop_tps:.2f}")


def count_parameters_of(model_dir) -> int:
    import json
    from pathlib import Path

    meta = json.loads((Path(model_dir) / "eager_rl_model.json").read_text())
    return int(meta["n_params"])


if __name__ == "__main__":
    main()
