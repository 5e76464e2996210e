"""A character-level tokenizer for the arithmetic task, built in code (no download, no training).

One token per character of printable ASCII plus newline, and four special tokens. It is a
`tokenizers` BPE model with no merges, so it splits any string into characters; characters
outside the vocabulary become `<unk>`. A post-processor puts `<bos>` in front of every
encoded text, and the chat template renders `<bos>` followed by the messages' contents, so a
plain prompt and the same prompt as a one-message conversation tokenize to the same ids
(TRL tokenizes plain prompts with special tokens and conversations through the template).

Saved next to the model weights, it loads with `AutoTokenizer.from_pretrained(dir)` and in
vLLM from the same directory.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0..3, in this order
# "\n" plus the 95 printable ASCII characters (space to "~"); the task itself uses 20 of them.
CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))
assert set(string.digits + "+-=\\{}") <= set(CHARACTERS)

# Every message's content, in order, after <bos>: a conversation is just its text. No role
# markers, so a model pretrained on plain prompts sees the same ids either way.
CHAT_TEMPLATE = "{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}"


def vocabulary() -> dict[str, int]:
    """Token string -> id: the special tokens first, then the characters."""
    tokens = list(SPECIAL_TOKENS) + list(CHARACTERS)
    return {tok: i for i, tok in enumerate(tokens)}


def build_tokenizer(model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """The character tokenizer, ready for `save_pretrained(model_dir)`.

    Left padding, because the tokenizer's batched use here is generation (HF `generate`).
    """
    vocab = vocabulary()
    # BPE without merges is a character splitter that knows about unknown characters; it needs
    # no pre-tokenizer, so spaces and newlines stay ordinary characters.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, fuse_unk=False))
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    backend.decoder = decoders.Fuse()  # join characters with nothing between them
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def encode(text: str) -> list[int]:
    """Ids of `text` without special tokens, without building a tokenizer (fast path for training).

    Agrees with `build_tokenizer()(text, add_special_tokens=False)` on the characters in the
    vocabulary (a test checks it); raises on any other character instead of mapping it to <unk>.
    """
    return [_VOCAB[c] for c in text]


_VOCAB = vocabulary()
PAD_ID, BOS_ID, EOS_ID, UNK_ID = (_VOCAB[t] for t in SPECIAL_TOKENS)
VOCAB_SIZE = len(_VOCAB)  # 100; models round their embedding up (see pretrain.py)
