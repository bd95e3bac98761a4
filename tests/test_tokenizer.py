"""The tiny tokenizer: Phi-3's added tokens in order, JSON spelt in ordinary tokens with byte fallback for the
rest, and an OpenVINO conversion that round-trips."""
import numpy as np
import openvino as ov
from openvino_tokenizers import convert_tokenizer

from ovphi.model.tokenizer import ADDED_TOKENS, build_tokenizer

TEXTS = [
    "<|user|>\n<|image_1|>\nDescribe the chart, please.<|end|>\n<|assistant|>\n",
    "Read the receipt: coffee 3.50, bread 2.10; total 5.60 €.",
    "Unicode falls back to bytes: naïve café, 東京, 😀.",
    "  leading spaces, trailing spaces  ",
]


def test_added_tokens_follow_the_base_vocabulary_in_phi3_order():
    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(ADDED_TOKENS)
    assert ids == list(range(ids[0], ids[0] + 45))
    assert ADDED_TOKENS[7] == "<|end|>" and ADDED_TOKENS[0] == "<|endoftext|>" and ADDED_TOKENS[-1] == "<|image|>"
    assert tokenizer.convert_tokens_to_ids(["<unk>", "<s>", "</s>"]) == [0, 1, 2]


def test_json_is_spelt_in_ordinary_tokens_and_other_characters_fall_back_to_bytes():
    tokenizer = build_tokenizer()

    def pieces(text):
        return tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))

    assert not [piece for piece in pieces('{"a": [1, -2.5e3], "b": true}') if piece.startswith("<0x")]
    assert {"{", "}", "[", "]", '"', ":", ",", "-", "0", "9"} <= set(tokenizer.get_vocab())
    assert pieces("é\x05") == ["\u2581", "<0xC3>", "<0xA9>", "<0x05>"]


def test_openvino_tokenizer_round_trips_identically():
    tokenizer = build_tokenizer()
    ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
    core = ov.Core()
    encode, decode = core.compile_model(ov_tokenizer, "CPU"), core.compile_model(ov_detokenizer, "CPU")
    for text in TEXTS:
        expected = tokenizer(text).input_ids
        got = encode([text])["input_ids"][0].tolist()
        assert got == expected, text
        decoded = decode(np.array([expected]))["string_output"][0]
        assert decoded == tokenizer.decode(expected, skip_special_tokens=True), text
