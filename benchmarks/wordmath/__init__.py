"""Word problems in natural language and the real pretrained model fine-tuned on them.

`task` generates the problems (two-step arithmetic in English, answer in `\\boxed{}`);
`model` fine-tunes SmolLM2-135M-Instruct on them until its sampled accuracy is mid-band.
"""
