"""`ovphi convert [MODEL] OUT`: Phi-3.5-vision checkpoint -> OpenVINO IR folder (INT4 AWQ by default)."""
import argparse

from ..convert.convert import DEFAULT_MODEL, Recipe, convert
from .options import HelpFormatter


def setup_arg_parser():
    defaults = Recipe()
    parser = argparse.ArgumentParser(prog="ovphi convert", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("model", help=f"hub id (e.g. {DEFAULT_MODEL}) or local checkpoint folder")
    parser.add_argument("out", help="IR folder to write")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit)")
    parser.add_argument("--weight-format", default=defaults.weight_format, help="fp32, fp16, int8 or int4")
    parser.add_argument("--sym", action="store_true", help="symmetric quantization (default: asymmetric)")
    parser.add_argument("--group-size", type=int, default=defaults.group_size, help="-1 for per-channel")
    parser.add_argument("--ratio", type=float, default=defaults.ratio, help="share of layers in int4")
    parser.add_argument("--awq", action=argparse.BooleanOptionalAction, default=None,
                        help="activation-aware weight quantization (default: on for int4)")
    parser.add_argument("--scale-estimation", action="store_true")
    parser.add_argument("--gptq", action="store_true")
    parser.add_argument("--dataset", default=defaults.dataset,
                        help="calibration samples: contextual, textvqa, builtin or local:PATH")
    parser.add_argument("--num-samples", type=int, default=defaults.num_samples)
    parser.add_argument("--backup-precision", default=defaults.backup_precision,
                        help="int8_asym, int8_sym or none, for layers kept out of int4")
    parser.add_argument("--vision", default=defaults.vision, choices=("auto", "int8-static", "int8"),
                        help="vision encoder of an int4/int8 IR: static INT8 calibrated on the --dataset images,"
                             " or INT8 weights only; auto (default): static where this CPU has int8 dot products"
                             " (AMX, VNNI), else weights only")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the calibration sample choice")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the checkpoint's own model code instead of ovphi's implementation")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT (never the model folder)")
    return parser


def main(args):
    recipe = Recipe(weight_format=args.weight_format, sym=args.sym, group_size=args.group_size, ratio=args.ratio,
                    awq=args.awq, scale_estimation=args.scale_estimation, gptq=args.gptq, dataset=args.dataset,
                    num_samples=args.num_samples, backup_precision=args.backup_precision, seed=args.seed,
                    vision=args.vision)
    manifest = convert(args.model, args.out, recipe, revision=args.revision,
                       trust_remote_code=args.trust_remote_code, force=args.force)
    print(f"IR written to {args.out} in {manifest['wall_seconds']:.0f} s, "
          f"peak RSS {manifest['peak_rss_bytes'] / 1e9:.2f} GB")
    print(f"{'part':<18} {'int4 %':>7} {'int8 %':>7} {'float %':>8} {'MB':>8}")
    for part, stats in manifest["parts"].items():
        print(f"{part:<18} {stats['int4_percent']:>7.1f} {stats['int8_percent']:>7.1f} "
              f"{stats['float_percent']:>8.1f} {stats['bytes'] / 1e6:>8.1f}")
