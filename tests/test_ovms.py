"""`ovphi export-ovms`: the files OpenVINO Model Server reads, field by field as its export_model.py writes them
for a VLM text-generation graph (OVMS itself cannot run here)."""
import json
import re

import pytest

from ovphi.convert.ovms import export_ovms
from ovphi.errors import OvphiError
from ovphi.runtime.config import RuntimeOptions


def graph_options(text):
    """The LLMCalculatorOptions block of a graph.pbtxt as {field: value text}."""
    block = re.search(r"LLMCalculatorOptions\]: \{(.*?)\n\s*\}", text, re.S).group(1)
    return dict(re.findall(r"^\s*(\w+): (.*?),?\s*$", block, re.M))


def test_the_graph_and_the_server_config_follow_ovms_format(int4_ir, tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": [
        {"name": "other", "base_path": "other"}]}))
    graph_path, written = export_ovms(int4_ir, "phi", config_path, kv_cache_precision="u8")
    text = graph_path.read_text()
    assert 'input_stream: "HTTP_REQUEST_PAYLOAD:input"' in text and 'output_stream: "HTTP_RESPONSE_PAYLOAD:output"' in text
    assert 'calculator: "HttpLLMCalculator"' in text and 'input_side_packet: "LLM_NODE_RESOURCES:llm"' in text
    assert "back_edge: true" in text and 'tag_index: "LOOPBACK:0"' in text
    options = graph_options(text)
    context = json.loads((int4_ir / "config.json").read_text())["max_position_embeddings"]
    assert options["pipeline_type"] == "VLM_CB" and options["models_path"] == '"./"'
    assert options["dynamic_split_fuse"] == "false" and options["enable_prefix_caching"] == "true"
    assert int(options["max_num_batched_tokens"]) == context  # a whole prompt in one step: LongRoPE stays exact
    assert json.loads(options["plugin_config"].strip("'")) == {"KV_CACHE_PRECISION": "u8"}
    assert options["device"] == '"CPU"' and int(options["cache_size"]) > 0
    defaults = RuntimeOptions()  # the genai-batch engine's own settings, so the folder batches alike in OVMS
    assert int(options["cache_size"]) == defaults.kv_cache_gb and int(options["max_num_seqs"]) == defaults.slots
    servers = json.loads(written.read_text())
    assert servers["model_config_list"] == [] and servers["mediapipe_config_list"][0]["name"] == "other"
    entry = servers["mediapipe_config_list"][1]
    assert entry["name"] == "phi" and (config_path.parent / entry["base_path"]).resolve() == int4_ir.resolve()
    eos = json.loads((int4_ir / "generation_config.json").read_text())["eos_token_id"]
    assert len(eos) >= 2  # OVMS stops on the folder's generation_config: <|end|> and <|endoftext|>
    export_ovms(int4_ir, "phi", config_path)  # again: the entry is replaced, not doubled
    assert [e["name"] for e in json.loads(written.read_text())["mediapipe_config_list"]] == ["other", "phi"]


def test_a_model_config_or_a_checkpoint_is_refused(int4_ir, tiny_dir):
    with pytest.raises(OvphiError, match="not an IR folder"):
        export_ovms(tiny_dir)
    with pytest.raises(OvphiError, match="not an OVMS config"):
        export_ovms(int4_ir, config_path=int4_ir / "config.json")


def test_what_the_user_wrote_is_kept(int4_ir, tmp_path):
    """A config.json that is not OVMS's is left alone; OVMS's own keeps all its keys; an edited graph stays."""
    import shutil

    ir = tmp_path / "ir"
    shutil.copytree(int4_ir, ir, ignore=shutil.ignore_patterns("model_cache", "graph.pbtxt"))
    theirs = tmp_path / "config.json"
    theirs.write_text('{"port": 9000, "models": ["a"]}')
    with pytest.raises(OvphiError, match="not an OVMS config .it has models.; left as it is"):
        export_ovms(ir)
    assert theirs.read_text() == '{"port": 9000, "models": ["a"]}' and not (ir / "graph.pbtxt").exists()
    theirs.write_text('{"monitoring": {"metrics": {"enable": true}}, "mediapipe_config_list": []}')
    graph, _ = export_ovms(ir)
    assert json.loads(theirs.read_text())["monitoring"] == {"metrics": {"enable": True}}
    export_ovms(ir, cache_size_gb=8)  # as ovphi wrote it: replaced
    assert "cache_size: 8," in graph.read_text()
    graph.write_text(graph.read_text().replace("cache_size: 8,", "cache_size: 12,"))
    with pytest.raises(OvphiError, match="was edited or not written by ovphi: pass --force"):
        export_ovms(ir)
    assert "cache_size: 12," in graph.read_text()
    export_ovms(ir, force=True)
    assert f"cache_size: {RuntimeOptions().kv_cache_gb}," in graph.read_text()
    theirs.write_text("{not json")
    with pytest.raises(OvphiError, match="config.json is not JSON"):
        export_ovms(ir)


@pytest.mark.parametrize("settings, message", [
    (dict(cache_size_gb=-5), "--cache-size must be at least 1"), (dict(max_num_seqs=0), "--max-num-seqs must be"),
    (dict(device="FOO"), "--device FOO is not an OpenVINO device")])
def test_bad_settings_are_refused_before_anything_is_written(int4_ir, tmp_path, settings, message):
    with pytest.raises(OvphiError, match=message):
        export_ovms(int4_ir, config_path=tmp_path / "config.json", **settings)
    assert not (tmp_path / "config.json").exists()
