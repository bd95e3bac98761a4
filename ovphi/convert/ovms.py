"""What OpenVINO Model Server needs to serve an IR folder (the files its `export_model.py text_generation`
writes): a MediaPipe graph.pbtxt in the folder, with the LLM calculator running the VLM pipeline, and
the server's config.json beside the folder listing it. The pipeline keeps paged attention and prefix
caching but takes a whole prompt in one step (no dynamic split-fuse): chunked, LongRoPE would pick its
short factors for the chunks before position 4096. The stop tokens come from the folder's
generation_config.json, which `ovphi convert` writes. Untested against a running OVMS here."""
import json
import os
from pathlib import Path

from ..errors import OvphiError
from ..files import write_atomically

GRAPH = """input_stream: "HTTP_REQUEST_PAYLOAD:input"
output_stream: "HTTP_RESPONSE_PAYLOAD:output"

node: {{
  name: "LLMExecutor"
  calculator: "HttpLLMCalculator"
  input_stream: "LOOPBACK:loopback"
  input_stream: "HTTP_REQUEST_PAYLOAD:input"
  input_side_packet: "LLM_NODE_RESOURCES:llm"
  output_stream: "LOOPBACK:loopback"
  output_stream: "HTTP_RESPONSE_PAYLOAD:output"
  input_stream_info: {{
    tag_index: 'LOOPBACK:0',
    back_edge: true
  }}
  node_options: {{
      [type.googleapis.com / mediapipe.LLMCalculatorOptions]: {{
          pipeline_type: VLM_CB,
          models_path: "./",
          plugin_config: '{plugin_config}',
          enable_prefix_caching: true,
          cache_size: {cache_size},
          max_num_batched_tokens: {max_num_batched_tokens},
          dynamic_split_fuse: false,
          max_num_seqs: {max_num_seqs},
          device: "{device}",
      }}
  }}
  input_stream_handler {{
    input_stream_handler: "SyncSetInputStreamHandler",
    options {{
      [mediapipe.SyncSetInputStreamHandlerOptions.ext] {{
        sync_set {{
          tag_index: "LOOPBACK:0"
        }}
      }}
    }}
  }}
}}
"""


def export_ovms(ir_dir, model_name=None, config_path=None, device="CPU", cache_size_gb=4, max_num_seqs=16,
                kv_cache_precision=None):
    """Write IR_DIR/graph.pbtxt and add the folder to OVMS's config.json (default: beside IR_DIR), keeping the
    entries it has. Returns (graph path, config path)."""
    ir_dir = Path(ir_dir)
    if not (ir_dir / "openvino_language_model.xml").exists() or not (ir_dir / "openvino_tokenizer.xml").exists():
        raise OvphiError(f"{ir_dir} is not an IR folder of `ovphi convert` (no language model or tokenizer IR)")
    config = json.loads((ir_dir / "config.json").read_text())
    plugin_config = {"KV_CACHE_PRECISION": kv_cache_precision} if kv_cache_precision else {}
    graph = GRAPH.format(plugin_config=json.dumps(plugin_config), cache_size=cache_size_gb, device=device,
                         max_num_batched_tokens=config["max_position_embeddings"], max_num_seqs=max_num_seqs)
    name = model_name or ir_dir.resolve().name
    config_path = Path(config_path) if config_path else ir_dir.resolve().parent / "config.json"
    servers = json.loads(config_path.read_text()) if config_path.exists() else {}
    if not isinstance(servers, dict) or "model_type" in servers:
        raise OvphiError(f"{config_path} is not an OVMS config (it looks like a model's config.json)")
    entries = [entry for entry in servers.get("mediapipe_config_list", []) if entry.get("name") != name]
    base_path = Path(os.path.relpath(ir_dir.resolve(), config_path.resolve().parent)).as_posix()
    servers = {"model_config_list": servers.get("model_config_list", []),
               "mediapipe_config_list": entries + [{"name": name, "base_path": base_path}]}
    write_atomically(ir_dir / "graph.pbtxt", graph)
    write_atomically(config_path, json.dumps(servers, indent=4) + "\n")
    return ir_dir / "graph.pbtxt", config_path
