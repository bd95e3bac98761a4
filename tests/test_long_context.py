"""Beyond 4096 tokens: the FP32 IR answers like PyTorch on both sides of LongRoPE's switch from the
short to the long factors, in both backends, and the INT4 recipe keeps exact f32 frequency tables."""
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
from exact import EXACT, tokenless_ids
from transformers import AutoModelForCausalLM, AutoProcessor

import ovphi.model
from ovphi.model.tokens import stop_token_ids
from ovphi.runtime import ChatSession, load

CORPUS = Path(ovphi.model.__file__).with_name("corpus.txt")
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def reference(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(tiny_dir, trust_remote_code=True)
    return model, processor


def user_turn(text, images):
    return [{"role": "user", "content": "".join(f"<|image_{n + 1}|>\n" for n in range(len(images))) + text}]


def prompt_of_length(processor, images, tokens):
    """(text, prompt length) of the longest corpus-text question whose prompt stays within `tokens`."""
    words = CORPUS.read_text().split()
    count = lambda n: len(processor(chat_text(processor, " ".join((words * 40)[:n]), images),  # noqa: E731
                                    images or None).input_ids[0])
    low, high = 1, len(words) * 40
    while low < high:  # the largest word count whose prompt fits
        middle = (low + high + 1) // 2
        low, high = (middle, high) if count(middle) <= tokens else (low, middle - 1)
    return " ".join((words * 40)[:low]), count(low)


def chat_text(processor, text, images):
    return processor.tokenizer.apply_chat_template(user_turn(text, images), add_generation_prompt=True, tokenize=False)


def pytorch_greedy(model, processor, text, images):
    """Greedy answer ids, without the stop token where the answer ended on one; never an id past the tokenizer's
    vocabulary (the model has more logits than tokens; ovphi's sampler and the IR's -inf logits skip them)."""
    inputs = processor(chat_text(processor, text, images), images or None)
    stops = stop_token_ids(processor.tokenizer)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=stops,
                             suppress_tokens=tokenless_ids(processor, model))
    answer = out[0, inputs["input_ids"].shape[1]:].tolist()
    return answer[:-1] if answer and answer[-1] in stops else answer


def runtime_greedy(engine, text, images):
    """(answer ids without the stop token, prompt tokens)."""
    for result in ChatSession(engine, max_new_tokens=NEW_TOKENS).ask(text, images):
        pass
    return result.token_ids, result.timings.prompt_tokens


# (prompt tokens, images): below, at and above 4096, then far above; images only where genai is not run
CASES = [(3000, 0), (4093, 0), (4099, 0), (6000, 2), (9000, 2), (6000, 0), (9000, 0)]


@pytest.mark.parametrize("tokens,image_count", CASES)
def test_fp32_ir_equals_pytorch_token_for_token(fp32_ir, reference, square_images, tokens, image_count):
    model, processor = reference
    images = square_images[:image_count]
    text, length = prompt_of_length(processor, images, tokens)
    assert tokens - 40 <= length <= tokens and (length > 4096) == (tokens > 4096)
    expected = pytorch_greedy(model, processor, text, images)
    backends = ["optimum"] if images else ["optimum", "genai", "genai-batch"]  # genai's image preprocessing differs
    for backend in backends:
        engine = load(fp32_ir, backend=backend, **EXACT)
        answer, prompt_tokens = runtime_greedy(engine, text, images)
        engine.close()
        assert prompt_tokens == length
        assert answer == expected, f"{backend} at {length} tokens"


def test_the_long_factors_change_the_answer(reference):
    """The check above has teeth: with the short factors frozen in (what tracing a Python `if` does),
    PyTorch's own answer beyond 4096 tokens changes, and below it does not."""
    model, processor = reference
    rope = model.model.rotary_emb
    long_text, _ = prompt_of_length(processor, [], 6000)
    short_text, _ = prompt_of_length(processor, [], 3000)
    right = [pytorch_greedy(model, processor, t, []) for t in (short_text, long_text)]
    saved = rope.long_inv_freq.clone()
    rope.long_inv_freq.copy_(rope.short_inv_freq)
    try:
        frozen = [pytorch_greedy(model, processor, t, []) for t in (short_text, long_text)]
    finally:
        rope.long_inv_freq.copy_(saved)
    assert frozen[0] == right[0] and frozen[1] != right[1]


def test_the_int4_ir_keeps_exact_f32_frequency_tables(int4_ir, reference):
    model, _ = reference
    rope = model.model.rotary_emb
    expected = {"short_inv_freq": rope.short_inv_freq.numpy(), "long_inv_freq": rope.long_inv_freq.numpy()}
    found = {}
    for node in ov.Core().read_model(int4_ir / "openvino_language_model.xml").get_ops():
        for key in expected:
            if node.get_type_name() == "Constant" and f"rotary_emb.{key}" in node.get_friendly_name():
                found[key] = node
    assert set(found) == set(expected)
    for key, node in found.items():
        assert node.get_element_type() == ov.Type.f32
        assert np.array_equal(node.get_data(), expected[key])
