"""What a JSON schema costs and whether it holds, per engine, on one IR folder: sampled answers (temperature 1, one
seed each) to one text question, with the schema and without, in turn. For each engine: how many constrained
answers parse and validate, the median TTFT (it holds the grammar's compile) and TPOT with and without it, and
how many tokens of the free answers are ids with no token (the IR holds them at -inf: convert/logits.py).

    python benchmarks/constrained_answers.py models/full-int4 --backend optimum --backend genai \
        --out benchmarks/reports/constrained-answers-amd-epyc
"""
import argparse
import json
import statistics
import time

import jsonschema

from ovphi.cpu import cpu_kind, cpu_model
from ovphi.evaluation.evaluate import vocabulary
from ovphi.files import write_report
from ovphi.runtime import GenerationConfig, load
from ovphi.runtime.constraint import schema_grammar
from ovphi.runtime.conversation import Conversation

QUESTION = "Describe a paint as JSON."
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["colour", "coats", "tags"],
          "properties": {"colour": {"enum": ["red", "dark blue", "green"]},
                         "coats": {"type": "integer", "minimum": 1, "maximum": 3},
                         "note": {"type": "string", "maxLength": 24},
                         "tags": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 8}}}}


def answer(engine, seed, grammar, max_new_tokens):
    """The TurnResult of one sampled text turn."""
    conversation = Conversation()
    conversation.add("user", QUESTION)
    result = engine.complete(conversation, GenerationConfig(max_new_tokens=max_new_tokens, temperature=1.0,
                                                            seed=seed, grammar=grammar))
    engine.reset()
    return result


def valid(text):
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def grammar_build_s():
    """Seconds to make the schema's Grammar before any turn (llguidance's check of the Lark, ovphi's EBNF)."""
    started = time.perf_counter()
    schema_grammar(json.dumps(SCHEMA))
    return time.perf_counter() - started


def measure(folder, backend, answers, max_new_tokens):
    engine = load(folder, backend)
    grammar = schema_grammar(json.dumps(SCHEMA))
    answer(engine, 0, None, 4)  # the plugin's first-inference repack, outside the measurement
    rows = {"free": [], "schema": []}
    texts = []
    tokens = len(vocabulary(folder))
    free_ids = []
    for seed in range(answers):
        for kind, constraint in (("free", None), ("schema", grammar)):
            result = answer(engine, seed, constraint, max_new_tokens)
            rows[kind].append(result.timings.as_dict() | {"finish_reason": result.finish_reason})
            if constraint:
                texts.append(result.answer)
            else:
                free_ids += result.token_ids
    engine.close()
    ended = [text for text, row in zip(texts, rows["schema"]) if row["finish_reason"] == "stop"]
    return {"answers": texts, "ended": len(ended), "valid": sum(map(valid, ended)), "turns": rows,
            "free_tokens": len(free_ids), "free_tokenless": sum(token >= tokens for token in free_ids)}


def median(rows, field):
    values = [row[field] for row in rows if row[field] is not None]
    return statistics.median(values) if values else None


def markdown(report):
    lines = [f"# Constrained answers: {report['folder']}", "",
             f"CPU: {report['cpu']}. {report['answers_per_engine']} answers per engine, each sampled (temperature 1, "
             f"seed 0 to {report['answers_per_engine'] - 1}) to \"{QUESTION}\", with and without the schema, "
             f"at most {report['max_new_tokens']} tokens. Making the schema's grammar (llguidance's check, ovphi's "
             f"EBNF) took {report['grammar_build_s'] * 1000:.0f} ms before any turn; each engine compiles it for its "
             "sampler inside the turn, in TTFT.", "",
             "| engine | ended (stop) | valid of ended | TTFT free / schema | TPOT free / schema (ratio) | free tokens"
             " with no token |", "|---|---|---|---|---|---|"]
    for backend, result in report["engines"].items():
        ttft = [median(result["turns"][kind], "ttft_s") for kind in ("free", "schema")]
        tpot = [median(result["turns"][kind], "tpot_s") for kind in ("free", "schema")]
        lines.append(f"| {backend} | {result['ended']} of {len(result['answers'])} | {result['valid']} | "
                     f"{ttft[0]:.2f} / {ttft[1]:.2f} s | {tpot[0] * 1000:.0f} / {tpot[1] * 1000:.0f} ms "
                     f"({tpot[1] / tpot[0]:.2f}x) | {result['free_tokenless']} of {result['free_tokens']} |")
    lines += ["", "Schema:", "", "```json", json.dumps(SCHEMA), "```", "", "First constrained answers:", ""]
    for backend, result in report["engines"].items():
        lines += [f"- {backend}: `{result['answers'][0]}`"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--backend", action="append", required=True)
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    report = {"folder": args.folder, "cpu": f"{cpu_model()} ({cpu_kind()})", "answers_per_engine": args.answers,
              "max_new_tokens": args.max_new_tokens, "schema": SCHEMA, "grammar_build_s": grammar_build_s(),
              "engines": {backend: measure(args.folder, backend, args.answers, args.max_new_tokens)
                          for backend in args.backend}}
    write_report(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
