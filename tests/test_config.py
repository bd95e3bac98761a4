"""GenerationConfig and RuntimeOptions: validated once, before any model loads; --ov-option parsing."""
import argparse

import pytest

from ovphi.commands.options import add_device_options, device_arguments, runtime_options
from ovphi.errors import OvphiError
from ovphi.runtime.config import GenerationConfig, RuntimeOptions, parse_properties


@pytest.mark.parametrize("settings, message", [
    (dict(max_new_tokens=0), "max_new_tokens must be at least 1"),
    (dict(max_new_tokens=-1), "max_new_tokens must be at least 1"),
    (dict(temperature=-0.1), "temperature must be 0"),
    (dict(top_p=0), "top_p must be in (0, 1]"),
    (dict(top_p=2), "top_p must be in (0, 1]"),
    (dict(top_k=-1), "top_k must be 0"),
    (dict(repetition_penalty=0), "repetition_penalty must be above 0"),
    (dict(num_crops=0), "num_crops must be 1 to 16"),
    (dict(num_crops=17), "num_crops must be 1 to 16"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(temperature=float("inf")), "temperature must be a finite number"),
    (dict(repetition_penalty=float("nan")), "repetition_penalty must be a finite number"),
    (dict(seed=-1), "seed must be 0 to 2"),
    (dict(seed=1 << 64), "seed must be 0 to 2"),
])
def test_bad_generation_settings_are_one_line_errors(settings, message):
    with pytest.raises(OvphiError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        GenerationConfig(**settings)


def test_temperature_zero_is_greedy():
    assert GenerationConfig().greedy and GenerationConfig(temperature=0).greedy
    assert not GenerationConfig(temperature=0.7).greedy
    assert GenerationConfig(temperature=1e-300).greedy  # logits / 1e-300 would overflow: below 1e-5 is greedy
    assert GenerationConfig(num_crops=16, top_p=1.0, top_k=0).num_crops == 16


@pytest.mark.parametrize("settings, message", [
    (dict(precision="f64"), "precision f64 is not one of f32, bf16, f16"),
    (dict(kv_cache_precision="int3"), "kv_cache_precision int3"),
    (dict(performance_hint="FAST"), "performance_hint FAST"),
])
def test_bad_runtime_options_are_one_line_errors(settings, message):
    with pytest.raises(OvphiError, match=message):
        RuntimeOptions(**settings)


def test_runtime_options_become_openvino_properties(tmp_path):
    options = RuntimeOptions(precision="f32", kv_cache_precision="f16", properties={"NUM_STREAMS": "1"})
    assert options.openvino_properties(tmp_path) == {
        "PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(options.compiled_cache_folder(tmp_path)),
        "INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f16", "NUM_STREAMS": "1"}
    assert options.compiled_cache_folder(tmp_path).parent == tmp_path / "model_cache"
    mine = RuntimeOptions(properties={"CACHE_DIR": "/elsewhere"})  # the user's own cache: left to OpenVINO
    assert mine.openvino_properties(tmp_path)["CACHE_DIR"] == "/elsewhere" and mine.compiled_cache_folder(tmp_path) is None
    assert "CACHE_DIR" not in RuntimeOptions(cache=False).openvino_properties(tmp_path)
    tmp_path.chmod(0o555)
    try:  # a read-only model folder has no cache (root writes anyway: then the cache is used)
        import os

        assert ("CACHE_DIR" in RuntimeOptions().openvino_properties(tmp_path)) == os.access(tmp_path, os.W_OK)
    finally:
        tmp_path.chmod(0o755)


def test_ov_options_are_parsed_as_key_value():
    assert parse_properties(["A=1", "B = x=y", "C="]) == {"A": "1", "B": " x=y", "C": ""}
    for bad in (["A"], ["=1"], [" =1"]):
        with pytest.raises(OvphiError, match="is not KEY=VALUE"):
            parse_properties(bad)


@pytest.mark.parametrize("options", [
    RuntimeOptions(),
    RuntimeOptions(device="GPU.1", precision="f32", kv_cache_precision="u8", performance_hint="THROUGHPUT",
                   cache=False, properties={"DYNAMIC_QUANTIZATION_GROUP_SIZE": "64", "A": "x=y"}, prefix_cache_mb=0),
])
def test_device_arguments_parse_back_to_the_same_runtime_options(options):
    parser = argparse.ArgumentParser()
    add_device_options(parser)
    assert runtime_options(parser.parse_args(device_arguments(options))) == options
