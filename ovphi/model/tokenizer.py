"""A small Phi-3-style tokenizer built offline: byte-fallback BPE (JSON's punctuation and the digits among its
ordinary tokens, as in Llama's) plus Phi-3's added tokens in their real order."""
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AddedToken, LlamaTokenizerFast

CORPUS = Path(__file__).with_name("corpus.txt")
BASE_SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_TOKENS = [f"<0x{value:02X}>" for value in range(256)]
# ordinary tokens, as in Llama's vocabulary, so that constrained JSON is spelt as the real model spells it
JSON_CHARACTERS = list('{}[]":,.-+0123456789eE')
ADDED_TOKENS = (
    ["<|endoftext|>", "<|assistant|>"]
    + [f"<|placeholder{i}|>" for i in range(1, 5)]
    + ["<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
    + [f"<|placeholder{i}|>" for i in range(7, 40)]
    + ["<|image|>"]
)
KEEP_TRAILING_SPACE = {"<|endoftext|>", "<|system|>", "<|end|>", "<|user|>"}  # the others strip it (rstrip)
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}"
    "{{- '<|assistant|>\n' -}}{% endif %}"
)


def train_bpe(base_vocab_size):
    """Merges learned from the bundled corpus; vocab = <unk> <s> </s>, 256 byte tokens, then merged pieces."""
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    reserved = len(BASE_SPECIALS) + len(BYTE_TOKENS)
    trainer = trainers.BpeTrainer(vocab_size=base_vocab_size - reserved, show_progress=False,
                                  special_tokens=[], limit_alphabet=200, initial_alphabet=JSON_CHARACTERS)
    learner.train([str(CORPUS)], trainer)
    learned = json.loads(learner.to_str())["model"]
    vocab = {token: i for i, token in enumerate(BASE_SPECIALS + BYTE_TOKENS)}
    for piece in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    return vocab, merges


def build_tokenizer(base_vocab_size=1024):
    """LlamaTokenizerFast with byte fallback, Phi-3's added tokens from id base_vocab_size on, and the chat template."""
    vocab, merges = train_bpe(base_vocab_size)
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    core.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    core.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tokenizer = LlamaTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="<|endoftext|>", unk_token="<unk>",
        pad_token="<|endoftext|>", add_bos_token=True, add_eos_token=False, legacy=False,
        clean_up_tokenization_spaces=False, model_max_length=131072, padding_side="right",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(token, special=True, normalized=False, rstrip=token not in KEEP_TRAILING_SPACE)
        for token in ADDED_TOKENS]}, replace_additional_special_tokens=False)
    return tokenizer
