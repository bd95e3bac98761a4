"""`ovphi convert` on the tiny checkpoint: the recipe lands in the IR, the IR loads in both runtimes,
the FP32 IR answers like PyTorch, and bad input fails in one line with nothing left behind."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import openvino as ov
import pytest
import torch
from conftest import default_sigint
from exact import EXACT_PROPERTIES, tokenless_ids
from transformers import AutoModelForCausalLM, AutoProcessor

from ovphi.convert import Recipe, convert
from ovphi.convert.vision import MIN_COSINE, choose_vision
from ovphi.cpu import cpu_flags



def run_cli(*args, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "ovphi", "convert", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def int4_awq(tiny_dir, tmp_path_factory):
    """INT4 AWQ through the command line, with the static INT8 vision encoder whatever this CPU would choose."""
    out = tmp_path_factory.mktemp("ir") / "int4"
    result = run_cli(tiny_dir, out, "--dataset", "builtin", "--num-samples", 8, "--vision", "int8-static")
    assert result.returncode == 0, result.stderr
    return out


def test_manifest_records_the_recipe_and_the_calibration(int4_awq):
    manifest = json.loads((int4_awq / "ovphi_manifest.json").read_text())
    recipe = manifest["recipe"]
    assert (recipe["weight_format"], recipe["sym"], recipe["group_size"], recipe["ratio"], recipe["awq"]) == (
        "int4", False, 128, 1.0, True)
    assert manifest["calibration"]["source"] == "builtin" and len(manifest["calibration"]["sample_ids"]) == 8
    assert len(manifest["source"]["weights_sha256"]) == 64 and manifest["versions"]["nncf"] == "3.4.0"
    assert manifest["wall_seconds"] > 0 and manifest["peak_rss_bytes"] > 0


def test_language_model_holds_int4_weights_and_the_other_parts_int8(int4_awq):
    parts = json.loads((int4_awq / "ovphi_manifest.json").read_text())["parts"]
    assert parts["language"]["int4_percent"] > 75  # every decoder layer; lm_head stays int8 as nncf chooses
    for part in ("text_embeddings", "vision_embeddings", "vision_projection"):
        assert parts[part]["int8_percent"] == 100.0 and parts[part]["int4"] == 0
    core = ov.Core()
    model = core.read_model(int4_awq / "openvino_language_model.xml")
    u4 = [op for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.u4]
    assert len(u4) >= 2 * 2 * 4  # weights and zero points of qkv, o, gate_up, down in 2 layers


def fake_quantize_ops(ir_file):
    return [op for op in ov.Core().read_model(ir_file).get_ops() if op.get_type_name() == "FakeQuantize"]


def test_vision_encoder_is_static_int8_measured_on_a_held_out_image(int4_awq):
    vision = json.loads((int4_awq / "ovphi_manifest.json").read_text())["vision"]
    assert vision["quantization"] == "int8-static" and len(vision["calibration_sample_ids"]) == 7
    assert vision["check_sample_id"] not in vision["calibration_sample_ids"]
    assert 0.5 < vision["check_cosine_vs_float"] <= 1.0
    assert len(fake_quantize_ops(int4_awq / "openvino_vision_embeddings_model.xml")) >= 4  # the linear layers' inputs
    assert fake_quantize_ops(int4_awq / "openvino_language_model.xml") == []


def test_the_vision_encoder_is_calibrated_one_crop_at_a_time(tiny_dir, red_image, blue_image):
    from types import SimpleNamespace

    from ovphi.convert.vision import calibration_items
    from ovphi.model.image_processing_phi3_v import Phi3VImageProcessor

    processor = Phi3VImageProcessor.from_pretrained(tiny_dir)
    samples = [SimpleNamespace(image=image) for image in (red_image, blue_image)]
    items = calibration_items(processor, samples)
    assert all(item.shape == (1, 3, 336, 336) and item.dtype == np.float32 for item in items)
    sizes = processor([red_image, blue_image], return_tensors="pt")["image_sizes"].tolist()
    assert len(items) == sum((h // 336) * (w // 336) + 1 for h, w in sizes)  # every HD crop and the global view


def test_int8_ir_quantizes_the_vision_encoder_on_samples_the_language_model_does_not_use(tiny_dir, tmp_path):
    manifest = convert(tiny_dir, tmp_path / "int8", Recipe(weight_format="int8", awq=False, dataset="builtin",
                                                           num_samples=3, vision="int8-static"))
    assert manifest["vision"]["quantization"] == "int8-static" and len(manifest["vision"]["calibration_sample_ids"]) == 2
    assert len(fake_quantize_ops(tmp_path / "int8" / "openvino_vision_embeddings_model.xml")) >= 4
    assert manifest["parts"]["language"]["int8_percent"] > 99 and manifest["parts"]["language"]["int4"] == 0


def test_vision_auto_takes_static_int8_only_where_the_cpu_has_int8_dot_products():
    assert choose_vision({"sse4_2", "avx2", "fma"})[0] == "int8"  # e.g. AMD Zen 1, Intel before Ice Lake
    assert choose_vision({"avx2", "avx_vnni"})[0] == "int8-static"  # Intel laptops since Alder Lake
    assert choose_vision({"avx512f", "avx512_vnni", "amx_int8"})[0] == "int8-static"  # Xeon with AMX


def test_auto_vision_is_resolved_for_this_cpu_gated_on_quality_and_explained(tiny_dir, tmp_path):
    manifest = convert(tiny_dir, tmp_path / "auto", Recipe(awq=False, dataset="builtin", num_samples=3))
    expected, reason = choose_vision(cpu_flags())
    vision = manifest["vision"]
    assert manifest["recipe"]["vision"] == expected and vision["chosen"] == reason
    static = fake_quantize_ops(tmp_path / "auto" / "openvino_vision_embeddings_model.xml") != []
    if expected == "int8-static":  # the tiny model's random encoder quantizes badly: the gate keeps weight-only
        assert vision["check_cosine_vs_float"] < MIN_COSINE and not static
        assert vision["quantization"] == "int8 weights" and "below 0.995" in vision["kept_weight_only_because"]
    else:
        assert not static and vision["quantization"] == "int8 weights"


def test_data_free_int4_with_weight_only_vision(int4_awq, tiny_dir, tmp_path):
    plain = tmp_path / "int4-data-free"
    manifest = convert(tiny_dir, plain, Recipe(awq=False, vision="int8"))
    assert manifest["calibration"] is None and manifest["vision"] == {"quantization": "int8 weights"}
    assert fake_quantize_ops(plain / "openvino_vision_embeddings_model.xml") == []
    awq_bytes = (int4_awq / "openvino_language_model.bin").read_bytes()
    plain_bytes = (plain / "openvino_language_model.bin").read_bytes()
    assert awq_bytes != plain_bytes  # AWQ changed the weights


def test_stop_tokens_end_a_turn(int4_awq):
    import openvino_genai

    generation = json.loads((int4_awq / "generation_config.json").read_text())
    tokenizer = json.loads((int4_awq / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    assert {ids["<|end|>"], ids["<|endoftext|>"]} <= set(generation["eos_token_id"])
    pipe = openvino_genai.VLMPipeline(str(int4_awq), "CPU")
    assert ids["<|end|>"] in pipe.get_generation_config().stop_token_ids


def test_int4_folder_generates_in_both_runtimes(int4_awq, red_image):
    import openvino_genai
    from optimum.intel import OVModelForVisualCausalLM

    model = OVModelForVisualCausalLM.from_pretrained(int4_awq, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(int4_awq, trust_remote_code=True)
    inputs = model.preprocess_inputs(text="Describe the image.", image=red_image, processor=processor)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    pipe = openvino_genai.VLMPipeline(str(int4_awq), "CPU")
    result = pipe.generate("Describe the image.", images=[ov.Tensor(np.array(red_image)[None])], max_new_tokens=8)
    assert len(result.texts[0]) > 0


def test_ids_without_a_token_get_minus_infinity_logits_in_the_ir(int4_awq, red_image):
    """The tiny model has 1,088 logits for 1,069 tokens, as the real one 32,064 for 32,011: the IR holds the extra
    ids at -inf, so that openvino.genai (or a model server) never samples one."""
    from optimum.intel import OVModelForVisualCausalLM

    model = OVModelForVisualCausalLM.from_pretrained(int4_awq, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(int4_awq, trust_remote_code=True)
    tokens = len(processor.tokenizer)
    assert model.config.vocab_size > tokens
    manifest = json.loads((int4_awq / "ovphi_manifest.json").read_text())
    assert manifest["tokenless_ids_masked"] == model.config.vocab_size - tokens
    inputs = model.preprocess_inputs(text="Describe the image.", image=red_image, processor=processor)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, output_logits=True, return_dict_in_generate=True)
    logits = torch.cat(out.logits)
    assert logits.shape == (4, model.config.vocab_size)
    assert torch.isfinite(logits[:, :tokens]).all() and torch.isneginf(logits[:, tokens:]).all()


def greedy_ids(model, processor, prompt, images):
    """Greedy ids, never one past the tokenizer (the IR gives those -inf: test_ids_without_a_token_...)."""
    inputs = processor(prompt, images)
    out = model.generate(**inputs, max_new_tokens=10, do_sample=False, suppress_tokens=tokenless_ids(processor, model))
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def test_fp32_ir_with_f32_hint_answers_like_pytorch(fp32_ir, tiny_dir, red_image, blue_image):
    from optimum.intel import OVModelForVisualCausalLM

    reference = AutoModelForCausalLM.from_pretrained(tiny_dir, trust_remote_code=True)
    ir_model = OVModelForVisualCausalLM.from_pretrained(fp32_ir, trust_remote_code=True, ov_config=EXACT_PROPERTIES)
    processor = AutoProcessor.from_pretrained(tiny_dir, trust_remote_code=True)
    template = processor.tokenizer.apply_chat_template
    one = [{"role": "user", "content": "<|image_1|>\nDescribe the image."}]
    two = [{"role": "user", "content": "<|image_1|>\n<|image_2|>\nCompare them."}]
    cases = [(one, [red_image]), (one, [blue_image]), (two, [red_image, blue_image])]
    first = greedy_ids(reference, processor, template(two, add_generation_prompt=True, tokenize=False),
                       [red_image, blue_image])
    second_turn = two + [{"role": "assistant", "content": processor.decode(first, skip_special_tokens=True)},
                         {"role": "user", "content": "Which one is red?"}]
    cases.append((second_turn, [red_image, blue_image]))
    for turns, images in cases:
        prompt = template(turns, add_generation_prompt=True, tokenize=False)
        with torch.no_grad():
            expected = greedy_ids(reference, processor, prompt, images)
        assert greedy_ids(ir_model, processor, prompt, images) == expected


@pytest.mark.parametrize("args, message", [
    (["{missing}", "{out}"], "does not exist"),
    (["{notphi}", "{out}"], "not Phi-3.5-vision"),
    (["{tiny}", "{out}", "--weight-format", "int3"], "unknown weight format"),
    (["{tiny}", "{out}", "--group-size", "96"], "or -1 (per-channel)"),
    (["{tiny}", "{out}", "--backup-precision", "int2"], "backup precision int2"),
    (["{tiny}", "{tiny}"], "must be kept"),
    (["{tiny}", "{out}", "--weight-format", "int8", "--awq"], "int4 only"),
    (["{tiny}", "{out}", "--dataset", "local:{empty}"], "0 usable samples"),
    (["{tiny}", "{out}", "--dataset", "builtin", "--num-samples", "99"], "fewer than --num-samples 99"),
    (["{tiny}", "{out}", "--dataset", "contextual"], "offline, use --dataset builtin"),
    (["{tiny}", "{out}", "--no-awq", "--vision", "int8-static"], "offline, use --dataset builtin"),  # its calibration
    (["{tiny}", "{out}", "--dataset", "builtin", "--num-samples", "1", "--no-awq", "--vision", "int8-static"],
     "vision int8"),
    (["microsoft/Phi-3.5-vision-instruct", "{out}"], "cannot be downloaded"),
])
def test_bad_input_fails_in_one_line(args, message, tiny_dir, tmp_path):
    notphi = tmp_path / "notphi"
    notphi.mkdir()
    (notphi / "config.json").write_text('{"model_type": "llama"}')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    names = dict(missing=tmp_path / "nope" / "x", notphi=notphi, tiny=tiny_dir, out=tmp_path / "out", empty=empty)
    result = run_cli(*[a.format(**names) for a in args])
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_existing_out_is_refused_without_force(tiny_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    result = run_cli(tiny_dir, tmp_path / "out")
    assert result.returncode != 0 and "--force" in result.stderr
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_corrupt_images_in_a_local_set_are_skipped_and_counted(tiny_dir, tmp_path, red_image):
    for i in range(3):
        red_image.save(tmp_path / f"good{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "prompts.txt").write_text("Describe the image.\n")
    too_many = run_cli(tiny_dir, tmp_path / "never", "--dataset", f"local:{tmp_path}", "--num-samples", 4)
    assert too_many.returncode != 0 and "3 usable samples (1 skipped)" in too_many.stderr  # every record was read
    out = tmp_path / "out"
    result = run_cli(tiny_dir, out, "--dataset", f"local:{tmp_path}", "--num-samples", 3, "--vision", "int8")
    assert result.returncode == 0, result.stderr
    calibration = json.loads((out / "ovphi_manifest.json").read_text())["calibration"]
    assert sorted(calibration["sample_ids"]) == ["good0.png", "good1.png", "good2.png"]
    assert [where for where, _ in calibration["skipped"]] in ([], [str(tmp_path / "broken.png")])


def test_ctrl_c_leaves_nothing_behind(tiny_dir, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "ovphi", "convert", str(tiny_dir), str(out), "--dataset",
                                "builtin", "--num-samples", "8"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint)
    for line in process.stdout:
        if line.startswith("[1/"):
            break
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def checkpoint_with_its_own_code(tiny_dir, tmp_path_factory):
    """The tiny checkpoint as checkpoints are published: model code in the folder, under module names of its own
    (not ovphi's), which auto_map points to."""
    import shutil

    from ovphi.model import MODEL_CODE

    folder = tmp_path_factory.mktemp("remote") / "tiny-remote"
    shutil.copytree(tiny_dir, folder)
    renamed = {name[:-3]: f"vendor_{name[:-3].replace('_phi3_v', '')}" for name in MODEL_CODE}
    for name in MODEL_CODE:
        code = (folder / name).read_text()
        for old, new in renamed.items():
            code = code.replace(f"from .{old} import", f"from .{new} import")
        (folder / f"{renamed[name[:-3]]}.py").write_text(code)
        (folder / name).unlink()
    for file in ("config.json", "preprocessor_config.json"):
        settings = json.loads((folder / file).read_text())
        settings["auto_map"] = {key: renamed[value.split(".")[0]] + "." + value.split(".")[1]
                                for key, value in settings["auto_map"].items()}
        (folder / file).write_text(json.dumps(settings))
    return folder


# int4 (AWQ through OVQuantizer, which loads the processor with the checkpoint's code) and fp16 (the plain export);
# int8 is compressed inside the same export call as fp16 and took 75 s more on the AVX2 EPYC
@pytest.mark.parametrize("weight_format", ["int4", "fp16"])
def test_trust_remote_code_converts_a_checkpoint_with_its_own_code(checkpoint_with_its_own_code, tmp_path,
                                                                   red_image, weight_format):
    out = tmp_path / weight_format
    extra = ["--dataset", "builtin", "--num-samples", 4] if weight_format == "int4" else []
    result = run_cli(checkpoint_with_its_own_code, out, "--trust-remote-code", "--weight-format", weight_format,
                     "--vision", "int8", *extra)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "ovphi_manifest.json").read_text())
    assert manifest["source"]["code"] == "checkpoint remote code"
    assert json.loads((out / "config.json").read_text())["auto_map"]["AutoConfig"].startswith("vendor_")
    red_image.save(tmp_path / "red.png")
    for backend in ("optimum", "genai"):
        answer = subprocess.run([sys.executable, "-m", "ovphi", "ask", str(out), "--image", str(tmp_path / "red.png"),
                                 "--backend", backend, "--max-new-tokens", "4", "--format", "json"],
                                capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                                env=dict(os.environ, HF_HUB_OFFLINE="1"))
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["timings"]["answer_tokens"] == 4


def test_a_disk_too_small_is_named_before_the_export(tiny_dir, tmp_path, monkeypatch):
    import importlib
    from collections import namedtuple

    convert_module = importlib.import_module("ovphi.convert.convert")  # the module, not the function
    from ovphi.errors import OvphiError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(convert_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    started = time.perf_counter()
    with pytest.raises(OvphiError, match=r"has 0.0 GB free; converting needs about"):
        convert(tiny_dir, tmp_path / "out", Recipe(weight_format="fp16"))
    assert time.perf_counter() - started < 5 and list(tmp_path.iterdir()) == []  # refused before any export
