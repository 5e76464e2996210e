"""Test-time experiments of the EAGer paper: `eager-eval` generates and scores, `eager-recap` summarises.

It composes `rollout/` (generation on token ids) and `rewards/` (answer checking), so it
sits above both. Modules, in the order a run uses them:

    config   EvalConfig: the command line (the seed repository's flags and more)
    data     datasets by hub id or local file, columns, prompts asking for \\boxed{}
    context  tokenizer, prompts, parameters and engine of one run
    runner   the four experiments; phase2 spends eager_init's saved budget, resumably
    records  per-prompt records in the seed's JSON layout, and back to PromptTrees
    store    one results file per experiment: atomic rewrites, resume, refusal of mixed runs
    scoring  answers and verdicts (rewards' verifiers, sandboxed code tests, Lowest-Centroid)
    metrics  Pass@k, Cons@k, PassRate, #T, #S
    recap    eager-recap: the table and the plots (plots)
"""
