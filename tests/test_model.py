"""The project's own Phi-3.5-vision: loads through auto_map, generates, matches the published layout."""
import math
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoProcessor
from transformers.modeling_utils import no_init_weights

from ovphi.model.checkpoint import make_config
from ovphi.model.modeling_phi3_v import Phi3LongRoPE, Phi3VForCausalLM

WEIGHT_NAMES = Path(__file__).parent / "data" / "weight_names.txt"


def load(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(tiny_dir, trust_remote_code=True)
    return model, processor


def greedy(model, processor, prompt, images, max_new_tokens=12):
    inputs = processor(prompt, images)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def chat(processor, turns):
    return processor.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)


def test_loads_through_auto_classes_and_answers_depend_on_the_image(tiny_dir, red_image, blue_image):
    model, processor = load(tiny_dir)
    assert type(model).__name__ == "Phi3VForCausalLM" and type(processor).__name__ == "Phi3VProcessor"
    prompt = chat(processor, [{"role": "user", "content": "<|image_1|>\nDescribe the image."}])
    red = greedy(model, processor, prompt, [red_image])
    blue = greedy(model, processor, prompt, [blue_image])
    assert len(red) == 12 and red != blue


def test_two_images_and_a_second_turn(tiny_dir, red_image, blue_image):
    model, processor = load(tiny_dir)
    turns = [{"role": "user", "content": "<|image_1|>\n<|image_2|>\nCompare the images."}]
    both = greedy(model, processor, chat(processor, turns), [red_image, blue_image])
    swapped = greedy(model, processor, chat(processor, turns), [blue_image, red_image])
    assert both != swapped
    turns += [{"role": "assistant", "content": processor.decode(both, skip_special_tokens=True)},
              {"role": "user", "content": "And the colours?"}]
    follow_up = greedy(model, processor, chat(processor, turns), [red_image, blue_image])
    assert len(follow_up) > 0


def test_generate_with_cache_equals_full_recompute(tiny_dir, red_image):
    model, processor = load(tiny_dir)
    inputs = processor(chat(processor, [{"role": "user", "content": "<|image_1|>\nWhat is it?"}]), [red_image])
    cached = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    uncached = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def published_names():
    """Every tensor name of the published checkpoint (weight_names.txt folds layer indices into '.N.')."""
    for line in WEIGHT_NAMES.read_text().splitlines():
        if line.startswith("#"):
            continue
        count, name = line.split("\t")
        if ".N." not in name:
            yield name
            continue
        indices = (0, 2) if "img_projection" in name else range(int(count))  # Linear, GELU, Linear
        yield from (name.replace(".N.", f".{i}.") for i in indices)


def test_full_size_layout_matches_the_published_checkpoint():
    with torch.device("meta"), no_init_weights():
        model = Phi3VForCausalLM(make_config("full"))
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - 4.15e9) < 0.01e9, params
    assert set(model.state_dict()) == set(published_names())


def test_longrope_uses_short_factors_up_to_4096_and_long_beyond():
    config = make_config("tiny")
    rope = Phi3LongRoPE(config)
    head_dim = config.head_dim
    exponents = torch.arange(0, head_dim, 2).float() / head_dim
    scale = math.sqrt(1 + math.log(config.max_position_embeddings / 4096) / math.log(4096))

    def expected_cos(factors, position):
        inv = 1.0 / (torch.tensor(factors) * config.rope_theta ** exponents)
        return torch.cat([(position * inv).cos()] * 2) * scale

    short_pos = torch.arange(4096)[None]  # sequence of exactly 4096 positions: short factors
    cos, _ = rope(short_pos, torch.float32)
    assert torch.allclose(cos[0, 4095], expected_cos(config.rope_scaling["short_factor"], 4095.0), atol=1e-4)
    long_pos = torch.arange(4097)[None]  # one more position: long factors for every position
    cos, _ = rope(long_pos, torch.float32)
    assert torch.allclose(cos[0, 4095], expected_cos(config.rope_scaling["long_factor"], 4095.0), atol=1e-4)
    assert torch.allclose(cos[0, 10], expected_cos(config.rope_scaling["long_factor"], 10.0), atol=1e-4)
