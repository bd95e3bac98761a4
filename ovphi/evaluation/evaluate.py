"""What a converted model costs against a reference, on (image, prompt) pairs (`ovphi eval`).

REFERENCE and TARGET are IR folders (optimum backend) or `pytorch:CHECKPOINT` (PyTorch, fp32). For
each pair both models answer greedily; then:
- FDT: the first divergent token of the target's answer (= the answer length when identical);
- SDT: the reference tokens the target's answer does not match (difflib's matching blocks);
- top-1 agreement and KL(reference || target), teacher-forced over the reference's answer;
- answer similarity: cosine of all-MiniLM-L6-v2 sentence embeddings.
The reference runs with the f32 precision hint by default, so FP-vs-FP comparisons are exact.
"""
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from ..calibration.sources import EVAL_BUILTIN, load_samples
from ..errors import OvphiError
from ..runtime import ChatSession, Conversation, GenerationConfig, RuntimeOptions, registry
from .metrics import divergent_tokens, first_divergent_token, teacher_forced
from .similarity import MODEL_NAME, AnswerSimilarity

MEASURES = ["identical", "fdt", "sdt", "top1_agreement", "kl_divergence", "similarity"]


def load_eval_set(source, num_samples=None):
    """Evaluation samples (all of a local or builtin set by default, 12 of a hub set); every image must
    be readable, since skipping one would quietly change what is compared."""
    samples = load_samples(source, num_samples, seed=0, builtin=EVAL_BUILTIN)
    if samples.skipped:
        where, reason = samples.skipped[0]
        raise OvphiError(f"evaluation image {where} cannot be read ({reason})")
    if not samples.samples:
        raise OvphiError(f"evaluation set '{source}' is empty")
    if num_samples and len(samples.samples) < num_samples:
        raise OvphiError(f"evaluation set '{source}' has {len(samples.samples)} pairs, fewer than --num-samples"
                         f" {num_samples}")
    return samples.samples


def load_model(spec, options):
    """The engine of an IR folder (optimum) or NAME:FOLDER; it must give logits for teacher forcing."""
    folder, name = registry.split_spec(spec)
    engine_class = registry.engine_class(name or registry.DEFAULT)
    if not engine_class.capabilities.logits:
        raise OvphiError(f"{spec}: eval needs an engine that gives logits (an IR folder, or pytorch:CHECKPOINT)")
    if not engine_class.capabilities.openvino_devices:
        options = replace(options, device="CPU")
    return engine_class(folder, options)


def vocabulary(folder):
    """The token -> id map of a model folder's tokenizer.json, added tokens included."""
    tokenizer = json.loads((Path(folder) / "tokenizer.json").read_text())
    return tokenizer["model"]["vocab"] | {token["content"]: token["id"] for token in tokenizer["added_tokens"]}


def greedy_answer(engine, sample, max_new_tokens):
    """(text, token ids without the stop token, the user turn) of a greedy answer to one sample."""
    chat = ChatSession(engine, GenerationConfig(max_new_tokens=max_new_tokens))
    for result in chat.ask(sample.instruction, [sample.image]):
        pass
    return result.answer, result.token_ids, Conversation(chat.conversation.messages[:1])


def compare(reference, target, sample, max_new_tokens, similarity):
    ref_text, ref_ids, question = greedy_answer(reference, sample, max_new_tokens)
    tgt_text, tgt_ids, _ = greedy_answer(target, sample, max_new_tokens)
    top1, kl = teacher_forced(reference.score(question, ref_ids), target.score(question, ref_ids))
    return {"sample": sample.sample_id, "prompt": sample.instruction, "reference_answer": ref_text,
            "target_answer": tgt_text, "reference_tokens": len(ref_ids), "target_tokens": len(tgt_ids),
            "identical": ref_ids == tgt_ids, "fdt": first_divergent_token(ref_ids, tgt_ids),
            "sdt": divergent_tokens(ref_ids, tgt_ids), "top1_agreement": top1, "kl_divergence": kl,
            "similarity": similarity(ref_text, tgt_text)}


def mean(rows, measure):
    values = [float(row[measure]) for row in rows if row[measure] is not None]
    return statistics.fmean(values) if values else None


def evaluate(reference_spec, target_spec, dataset="builtin", num_samples=None, max_new_tokens=32, options=None,
             reference_precision="f32"):
    """The evaluation report (a dict) of TARGET (run with RuntimeOptions `options`) against REFERENCE (the
    same options at reference_precision)."""
    options = options or RuntimeOptions()
    samples = load_eval_set(dataset, num_samples)
    reference = load_model(reference_spec, replace(options, precision=reference_precision))
    target = load_model(target_spec, options)
    if vocabulary(reference.model_dir) != vocabulary(target.model_dir):
        raise OvphiError(f"{reference_spec} and {target_spec} have different tokenizers: their answers cannot be"
                         " compared token by token")
    similarity = AnswerSimilarity()
    rows = [compare(reference, target, sample, max_new_tokens, similarity) for sample in samples]
    return {"reference": reference_spec, "target": target_spec, "dataset": dataset, "pairs": len(rows),
            "max_new_tokens": max_new_tokens, "reference_precision": reference_precision or "device default",
            "target_precision": options.precision or "device default", "device": options.device,
            "embedding_model": MODEL_NAME,
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
