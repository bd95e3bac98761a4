"""`ovphi bench MODEL [MODEL ...]`: latency of each IR folder x backend over fixed scenarios, beside the
PyTorch model (`pytorch:CHECKPOINT`, fp32 and bf16) as the baseline a user would otherwise run.

A MODEL is an IR folder (run with each --backend) or BACKEND:FOLDER for one variant: pytorch:CHECKPOINT,
and optimum-stock:IR / genai-stock:IR for the two runtimes with their own defaults. Writes report.json,
report.md and report.png into OUT, atomically; an OUT holding anything but a previous report needs --force.
"""
import argparse
from pathlib import Path

from ..bench import SCENARIOS, bench
from ..runtime import registry
from .options import HelpFormatter, add_device_options, runtime_options


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi bench", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("models", nargs="+", help="IR folders to compare (each with every --backend), "
                                                  "BACKEND:FOLDER for one variant, pytorch:CHECKPOINT for the baseline")
    parser.add_argument("--out", default="reports/bench", help="report folder")
    parser.add_argument("--backend", action="append", choices=registry.names(),
                        help="repeat to compare (default: optimum and genai)")
    parser.add_argument("--torch-precision", action="append", choices=["f32", "bf16"],
                        help="dtypes of pytorch:CHECKPOINT (repeat; default both)")
    parser.add_argument("--scenario", action="append", help=f"repeat; default all: {', '.join(SCENARIOS)}")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer length")
    parser.add_argument("--baseline", type=int, default=0, help="variant index the ratios compare against")
    add_device_options(parser)
    parser.add_argument("--force", action="store_true", help="replace an --out folder that holds other files")
    return parser


def main(args):
    bench(args.models, args.out, backends=args.backend or ("optimum", "genai"), options=runtime_options(args),
          scenarios=args.scenario or tuple(SCENARIOS), runs=args.runs, max_new_tokens=args.max_new_tokens,
          baseline=args.baseline, torch_precisions=args.torch_precision or ("f32", "bf16"), force=args.force)
    print((Path(args.out) / "report.md").read_text())
