"""`ovphi export-ovms IR_DIR`: make an IR folder servable by OpenVINO Model Server (graph.pbtxt in it, the
folder listed in OVMS's config.json beside it), for when one machine is not enough. Then, for example:

    docker run --rm -p 8000:8000 -v "$PWD/models:/models" openvino/model_server:latest \\
        --rest_port 8000 --config_path /models/config.json
"""
import argparse

from ..convert.ovms import export_ovms
from ..runtime.config import RuntimeOptions
from .options import HelpFormatter


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi export-ovms", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("ir_dir", help="IR folder from `ovphi convert`")
    parser.add_argument("--model-name", help="the model id clients use (default: the folder's name)")
    parser.add_argument("--config", help="OVMS config.json to add the folder to (default: beside IR_DIR)")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, ...")
    defaults = RuntimeOptions()
    parser.add_argument("--cache-size", type=int, default=defaults.kv_cache_gb,
                        help="GB of KV cache OVMS reserves (serve's --kv-cache-gb)")
    parser.add_argument("--max-num-seqs", type=int, default=defaults.slots,
                        help="sequences batched together (serve's --slots)")
    parser.add_argument("--kv-cache-precision", choices=["u8"], help="u8 halves the KV cache (default: the device's)")
    parser.add_argument("--force", action="store_true", help="replace a graph.pbtxt that was edited by hand")
    return parser


def main(args):
    graph, config = export_ovms(args.ir_dir, args.model_name, args.config, args.device, args.cache_size,
                                args.max_num_seqs, args.kv_cache_precision, args.force)
    print(f"wrote {graph} and {config}")
