"""`ovphi make-checkpoint tiny|full OUT`: build a random Phi-3.5-vision checkpoint."""
import argparse

from ..model.checkpoint import make_checkpoint
from ..resources import peak_rss_bytes
from .options import HelpFormatter


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi make-checkpoint", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("kind", choices=["tiny", "full"], help="tiny: 2 small layers; full: real dimensions")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, help="decoder layers of `full` (default: 32, as the real model)")
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    return parser


def main(args):
    seconds = make_checkpoint(args.kind, args.out, seed=args.seed, layers=args.layers, force=args.force)
    print(f"{args.kind} checkpoint written to {args.out} in {seconds:.1f} s, peak RSS {peak_rss_bytes() / 1e9:.2f} GB")
