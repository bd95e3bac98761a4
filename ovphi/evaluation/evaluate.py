"""`ovphi eval REFERENCE TARGET`: what a converted model costs against a reference, on (image, prompt) pairs.

REFERENCE and TARGET are IR folders (optimum backend) or `pytorch:CHECKPOINT` (PyTorch, fp32). For
each pair both models answer greedily; then:
- FDT: the first divergent token of the target's answer (= the answer length when identical);
- SDT: the reference tokens the target's answer does not match (difflib's matching blocks);
- top-1 agreement and KL(reference || target), teacher-forced over the reference's answer;
- answer similarity: cosine of all-MiniLM-L6-v2 sentence embeddings.
The reference runs with the f32 precision hint by default, so FP-vs-FP comparisons are exact.
Writes OUT/report.json and OUT/report.md atomically and prints a one-line summary.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

from ..calibration.sources import CHOICES, HUB_SETS, from_hub, from_records, read_local_records
from ..errors import OvphiError
from ..files import write_folder_atomically
from ..runtime import ChatSession, load, parse_model_spec
from .metrics import divergent_tokens, first_divergent_token, teacher_forced
from .similarity import MODEL_NAME, AnswerSimilarity

EVAL_SET = Path(__file__).with_name("builtin") / "samples.jsonl"
MEASURES = ["identical", "fdt", "sdt", "top1_agreement", "kl_divergence", "similarity"]


def load_eval_set(source, num_samples=None):
    """Evaluation samples (all of a local or builtin set by default, 12 of a hub set); every image must
    be readable, since skipping one would quietly change what is compared."""
    if source in HUB_SETS:
        samples = from_hub(source, num_samples or 12)
    elif source == "builtin" or source.startswith("local:"):
        records = read_local_records(EVAL_SET if source == "builtin" else source[len("local:"):])
        samples = from_records(source, records, num_samples or len(records), seed=0)
    else:
        raise OvphiError(f"unknown evaluation set '{source}': choose {CHOICES}")
    if samples.skipped:
        where, reason = samples.skipped[0]
        raise OvphiError(f"evaluation image {where} cannot be read ({reason})")
    if not samples.samples:
        raise OvphiError(f"evaluation set '{source}' is empty")
    if num_samples and len(samples.samples) < num_samples:
        raise OvphiError(f"evaluation set '{source}' has {len(samples.samples)} pairs, fewer than --num-samples"
                         f" {num_samples}")
    return samples.samples


def load_model(spec, device, precision):
    model_dir, backend = parse_model_spec(spec)
    if backend not in (None, "optimum", "pytorch"):
        raise OvphiError(f"{spec}: eval needs the logits of an IR folder (optimum backend) or pytorch:CHECKPOINT")
    return load(model_dir, device="CPU" if backend == "pytorch" else device, backend=backend or "optimum",
                precision=precision)


def greedy_answer(vlm, sample, max_new_tokens):
    """(text, token ids without the stop token, the user turn) of a greedy answer to one sample."""
    chat = ChatSession(vlm, max_new_tokens=max_new_tokens)
    text = "".join(chat.ask(sample.instruction, [sample.image]))
    ids = [token for token in vlm.last_answer_ids if token not in vlm.stop_ids]
    return text.strip(), ids, chat.messages[:1]


def compare(reference, target, sample, max_new_tokens, similarity):
    ref_text, ref_ids, messages = greedy_answer(reference, sample, max_new_tokens)
    tgt_text, tgt_ids, _ = greedy_answer(target, sample, max_new_tokens)
    top1, kl = teacher_forced(reference.score(messages, [sample.image], ref_ids),
                              target.score(messages, [sample.image], ref_ids))
    return {"sample": sample.sample_id, "prompt": sample.instruction, "reference_answer": ref_text,
            "target_answer": tgt_text, "reference_tokens": len(ref_ids), "target_tokens": len(tgt_ids),
            "identical": ref_ids == tgt_ids, "fdt": first_divergent_token(ref_ids, tgt_ids),
            "sdt": divergent_tokens(ref_ids, tgt_ids), "top1_agreement": top1, "kl_divergence": kl,
            "similarity": similarity(ref_text, tgt_text)}


def mean(rows, measure):
    values = [float(row[measure]) for row in rows if row[measure] is not None]
    return statistics.fmean(values) if values else None


def evaluate(reference_spec, target_spec, dataset="builtin", num_samples=None, max_new_tokens=32, device="CPU",
             reference_precision="f32", precision=None):
    """The evaluation report (a dict) of TARGET against REFERENCE."""
    samples = load_eval_set(dataset, num_samples)
    reference = load_model(reference_spec, device, reference_precision)
    target = load_model(target_spec, device, precision)
    if reference.tokenizer.get_vocab() != target.tokenizer.get_vocab():
        raise OvphiError(f"{reference_spec} and {target_spec} have different tokenizers: their answers cannot be"
                         " compared token by token")
    similarity = AnswerSimilarity()
    rows = [compare(reference, target, sample, max_new_tokens, similarity) for sample in samples]
    return {"reference": reference_spec, "target": target_spec, "dataset": dataset, "pairs": len(rows),
            "max_new_tokens": max_new_tokens, "reference_precision": reference_precision or "device default",
            "target_precision": precision or "device default", "device": device, "embedding_model": MODEL_NAME,
            "date": time.strftime("%Y-%m-%d %H:%M"), "mean": {m: mean(rows, m) for m in MEASURES}, "samples": rows}


def summary_line(report):
    means = report["mean"]
    fmt = lambda value, spec: "–" if value is None else format(value, spec)  # noqa: E731
    return (f"{report['target']} vs {report['reference']} on {report['pairs']} pairs: identical "
            f"{fmt(means['identical'], '.0%')}, FDT {fmt(means['fdt'], '.1f')}, SDT {fmt(means['sdt'], '.1f')}, "
            f"top-1 {fmt(means['top1_agreement'], '.3f')}, KL {fmt(means['kl_divergence'], '.2e')}, "
            f"similarity {fmt(means['similarity'], '.3f')}")


def markdown(report):
    lines = [f"# ovphi eval: {report['target']} against {report['reference']}", "",
             f"{report['pairs']} pairs of `{report['dataset']}`, greedy answers of up to {report['max_new_tokens']} "
             f"tokens; reference precision {report['reference_precision']}, target {report['target_precision']}; "
             f"similarity: {report['embedding_model']}.", "", summary_line(report), "",
             "| sample | ref tok | FDT | SDT | top-1 | KL | similarity |", "|---|---|---|---|---|---|---|"]
    for row in report["samples"]:
        top1 = "–" if row["top1_agreement"] is None else f"{row['top1_agreement']:.3f}"
        kl = "–" if row["kl_divergence"] is None else f"{row['kl_divergence']:.2e}"
        lines.append(f"| {row['sample']} | {row['reference_tokens']} | {row['fdt']} | {row['sdt']} | {top1} | {kl} | "
                     f"{row['similarity']:.3f} |")
    return "\n".join(lines) + "\n"


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", help="IR folder or pytorch:CHECKPOINT")
    parser.add_argument("target", help="IR folder or pytorch:CHECKPOINT")
    parser.add_argument("--dataset", default="builtin", help=f"evaluation pairs: {CHOICES}")
    parser.add_argument("--num-samples", type=int, help="pairs to use (default: all 12 of builtin; 12 otherwise)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--reference-precision", default="f32", help="precision hint of the reference (f32)")
    parser.add_argument("--precision", help="precision hint of the target (default: the device's)")
    parser.add_argument("--out", default="reports/eval", help="report folder")
    return parser


def main(args):
    if args.num_samples is not None and args.num_samples < 1:
        raise OvphiError("--num-samples must be at least 1")
    report = evaluate(args.reference, args.target, args.dataset, args.num_samples, args.max_new_tokens,
                      args.device, args.reference_precision, args.precision)

    def write(folder):
        (folder / "report.json").write_text(json.dumps(report, indent=2))
        (folder / "report.md").write_text(markdown(report))

    write_folder_atomically(args.out, write)
    print(summary_line(report))
