"""`ovphi eval REFERENCE TARGET`: what a converted model costs against a reference, on (image, prompt) pairs.

REFERENCE and TARGET are IR folders (optimum engine) or `pytorch:CHECKPOINT` (PyTorch). For each pair
both models answer greedily; then FDT (first divergent token), SDT (reference tokens the target does not
match), teacher-forced top-1 agreement and KL(reference || target), and the answers' similarity
(all-MiniLM-L6-v2). The reference runs with the f32 precision hint by default, so FP-vs-FP comparisons
are exact. Writes OUT/report.json and OUT/report.md atomically and prints a one-line summary.
"""
import argparse
import json

from ..calibration.sources import CHOICES
from ..errors import OvphiError
from ..evaluation.evaluate import evaluate, markdown, summary_line
from ..files import check_replaceable, write_folder_atomically
from ..runtime import registry
from .options import HelpFormatter, add_device_options, runtime_options

REPORT_FILES = ("report.json", "report.md")


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi eval", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("reference", help="IR folder or pytorch:CHECKPOINT")
    parser.add_argument("target", help="IR folder or pytorch:CHECKPOINT")
    parser.add_argument("--dataset", default="builtin", help=f"evaluation pairs: {CHOICES}")
    parser.add_argument("--num-samples", type=int, help="pairs to use (default: all 12 of builtin; 12 otherwise)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer length")
    parser.add_argument("--reference-precision", default="f32", help="precision hint of the reference")
    add_device_options(parser)
    parser.add_argument("--out", default="reports/eval", help="report folder")
    parser.add_argument("--force", action="store_true", help="replace an --out folder that holds other files")
    return parser


def main(args):
    if args.num_samples is not None and args.num_samples < 1:
        raise OvphiError("--num-samples must be at least 1")
    models = [registry.split_spec(spec)[0] for spec in (args.reference, args.target)]
    check_replaceable(args.out, REPORT_FILES, args.force, keep=models)
    report = evaluate(args.reference, args.target, args.dataset, args.num_samples, args.max_new_tokens,
                      runtime_options(args), args.reference_precision)

    def write(folder):
        (folder / "report.json").write_text(json.dumps(report, indent=2))
        (folder / "report.md").write_text(markdown(report))

    write_folder_atomically(args.out, write)
    print(summary_line(report))
