"""`ovphi export-ovms`: the files OpenVINO Model Server reads, field by field as its export_model.py writes them
for a VLM text-generation graph (OVMS itself cannot run here)."""
import json
import re

import pytest

from ovphi.convert.ovms import export_ovms
from ovphi.errors import OvphiError


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
