"""What OpenVINO Model Server needs to serve an IR folder (the files its `export_model.py text_generation`
writes): a MediaPipe graph.pbtxt in the folder, with the LLM calculator running the VLM pipeline, and
the server's config.json beside the folder listing it. The pipeline's scheduler settings are the genai-batch
engine's (runtime/config.py batch_scheduler_settings). The stop tokens come from the folder's
generation_config.json, which `ovphi convert` writes. Untested against a running OVMS here."""
import hashlib
import json
import os
import re
from pathlib import Path

from ..errors import OvphiError
from ..files import read_json, write_atomically
from ..runtime.config import RuntimeOptions, batch_scheduler_settings

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
{scheduler}
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


SIGNED = "# written by ovphi export-ovms, replaced by it only while unedited: sha256 {} of the lines below\n"
# the top-level keys of an OVMS config.json: all are kept; a file with another is not one
OVMS_KEYS = {"model_config_list", "mediapipe_config_list", "pipeline_config_list", "custom_loader_config_list",
             "custom_node_library_config_list", "monitoring"}
DEVICE = re.compile(r"(CPU|GPU(\.\d+)?|NPU|AUTO|(AUTO|HETERO|MULTI):[A-Z0-9.,]+)")


def signed(graph):
    """The graph with its first line saying ovphi wrote it, and the hash of what it wrote."""
    return SIGNED.format(hashlib.sha256(graph.encode()).hexdigest()) + graph


def check_replaceable_graph(path, force):
    """Refuse to replace a graph.pbtxt that someone edited (or that ovphi did not write) unless force."""
    if force or not path.exists():
        return
    text = path.read_text(errors="replace")
    if text != signed(text.partition("\n")[2]):
        raise OvphiError(f"{path} was edited or not written by ovphi: pass --force to replace it")


def check_settings(device, cache_size_gb, max_num_seqs):
    if not DEVICE.fullmatch(device):
        raise OvphiError(f"--device {device} is not an OpenVINO device (CPU, GPU, GPU.1, NPU, AUTO, HETERO:GPU,CPU)")
    if cache_size_gb < 1:
        raise OvphiError(f"--cache-size must be at least 1 (GB of KV cache), not {cache_size_gb}")
    if max_num_seqs < 1:
        raise OvphiError(f"--max-num-seqs must be at least 1, not {max_num_seqs}")


def export_ovms(ir_dir, model_name=None, config_path=None, device="CPU", cache_size_gb=None, max_num_seqs=None,
                kv_cache_precision=None, force=False):
    """Write IR_DIR/graph.pbtxt and add the folder to OVMS's config.json (default: beside IR_DIR), keeping every
    entry and key it has. A graph.pbtxt that was edited is replaced only with force. Returns (graph path, config
    path). The scheduler settings are the genai-batch engine's (config.batch_scheduler_settings), its slots and KV
    cache by default, so the folder batches in OVMS as in `ovphi serve --backend genai-batch`."""
    ir_dir = Path(ir_dir)
    defaults = RuntimeOptions()
    cache_size_gb = defaults.kv_cache_gb if cache_size_gb is None else cache_size_gb
    max_num_seqs = defaults.slots if max_num_seqs is None else max_num_seqs
    check_settings(device, cache_size_gb, max_num_seqs)
    if not (ir_dir / "openvino_language_model.xml").exists() or not (ir_dir / "openvino_tokenizer.xml").exists():
        raise OvphiError(f"{ir_dir} is not an IR folder of `ovphi convert` (no language model or tokenizer IR)")
    config = read_json(ir_dir / "config.json", "the IR folder's model config")
    plugin_config = {"KV_CACHE_PRECISION": kv_cache_precision} if kv_cache_precision else {}
    settings = batch_scheduler_settings(config["max_position_embeddings"], max_num_seqs, cache_size_gb)
    scheduler = "\n".join(f"          {name}: {json.dumps(value)}," for name, value in settings.items())
    graph = GRAPH.format(plugin_config=json.dumps(plugin_config), scheduler=scheduler, device=device)
    name = model_name or ir_dir.resolve().name
    config_path = Path(config_path) if config_path else ir_dir.resolve().parent / "config.json"
    servers = read_json(config_path, "give OVMS's own with --config") if config_path.exists() else {}
    others = sorted(set(servers) - OVMS_KEYS) if isinstance(servers, dict) else ["(not an object)"]
    if others:
        raise OvphiError(f"{config_path} is not an OVMS config (it has {others[0]}); left as it is: give OVMS's"
                         " config with --config")
    check_replaceable_graph(ir_dir / "graph.pbtxt", force)
    entries = [entry for entry in servers.get("mediapipe_config_list", []) if entry.get("name") != name]
    base_path = Path(os.path.relpath(ir_dir.resolve(), config_path.resolve().parent)).as_posix()
    servers = {"model_config_list": [], **servers,
               "mediapipe_config_list": entries + [{"name": name, "base_path": base_path}]}
    write_atomically(ir_dir / "graph.pbtxt", signed(graph))
    write_atomically(config_path, json.dumps(servers, indent=4) + "\n")
    return ir_dir / "graph.pbtxt", config_path
