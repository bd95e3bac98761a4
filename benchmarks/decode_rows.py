"""What batching buys a decode step: the language model's step time by the number of rows in it.

A continuous-batching server decodes its running sequences in one step, one row each, so that the weights are
read once for all of them. This times the folder's language model alone (plain OpenVINO, CPU plugin, its
defaults) on decode steps of ROWS rows, each row a sequence of its own with CACHED cached positions, and once
with the same rows as new tokens of one sequence (a short prefill). A row's cost is the step over the rows;
"x one row" is how many single-row steps one step costs. A second compile with the plugin's per-node counters
on (they slow a step, so the timed one runs without them) gives the fully connected layers' share of a step,
and the kernel they ran.

    python benchmarks/decode_rows.py models/full-int4 --out benchmarks/reports/decode-rows-amd-epyc
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import openvino as ov

from ovphi.cpu import cpu_kind, cpu_model
from ovphi.files import write_report

LANGUAGE_MODEL = "openvino_language_model.xml"


def feed(sequences, new, cached, hidden, rng):
    """Inputs for NEW tokens of each of SEQUENCES sequences after CACHED cached positions."""
    return {"inputs_embeds": rng.standard_normal([sequences, new, hidden], dtype=np.float32) * 0.02,
            "attention_mask": np.ones([sequences, cached + new], np.int64),
            "position_ids": np.tile(np.arange(cached, cached + new), (sequences, 1)),
            "beam_idx": np.arange(sequences, dtype=np.int32)}


def step_times(request, sequences, new, cached, hidden, repeats, rng):
    """Seconds of each of REPEATS steps of NEW tokens per sequence, after an untimed prefill of CACHED."""
    request.reset_state()
    request.infer(feed(sequences, cached, 0, hidden, rng))
    times = []
    for repeat in range(repeats):
        inputs = feed(sequences, new, cached + repeat * new, hidden, rng)
        start = time.perf_counter()
        request.infer(inputs)
        times.append(time.perf_counter() - start)
    return times


def fully_connected_share(request, sequences, new, cached, hidden, rng):
    """The fully connected layers' share of the plugin's per-node time in one step, and their kernels."""
    step_times(request, sequences, new, cached, hidden, 1, rng)
    executed = [node for node in request.profiling_info if node.status == node.Status.EXECUTED]
    connected = [node for node in executed if node.node_type.startswith("FullyConnected")]
    seconds = lambda nodes: sum(node.real_time.total_seconds() for node in nodes)  # noqa: E731
    return seconds(connected) / seconds(executed), sorted({node.exec_type for node in connected})


def measure(model_dir, rows, cached, repeats):
    core = ov.Core()
    model = core.read_model(Path(model_dir) / LANGUAGE_MODEL)
    hidden = model.input("inputs_embeds").get_partial_shape()[2].get_length()
    request = core.compile_model(model, "CPU").create_infer_request()
    profiled = core.compile_model(model, "CPU", {"PERF_COUNT": True}).create_infer_request()
    rng = np.random.default_rng(0)
    step_times(request, 1, 1, cached, hidden, 1, rng)  # first inference
    results = []
    shapes = [("sequences", count, 1) for count in rows]
    shapes += [("tokens of one sequence", 1, count) for count in rows if count > 1]  # 1: the same step as above
    for shape, sequences, new in shapes:
        count = sequences * new
        times = step_times(request, sequences, new, cached, hidden, repeats, rng)
        share, kernels = fully_connected_share(profiled, sequences, new, cached, hidden, rng)
        results.append({"rows_as": shape, "rows": count, "step_s": statistics.median(times), "steps_s": times,
                        "fully_connected_share": share, "fully_connected_kernels": kernels})
    one_row = results[0]["step_s"]
    for row in results:
        row["x_one_row"] = row["step_s"] / one_row
    return results


def markdown(report):
    lines = [f"# A decode step by its rows — {report['cpu']}", "",
             f"`{report['model']}`'s language model alone, OpenVINO {report['openvino']}, CPU plugin defaults"
             f" (inference precision {report['inference_precision']}); {report['cached']} cached positions per"
             f" sequence; median of {report['repeats']} steps. Fully connected: their share of the plugin's per-node"
             " time in a step of a second compile with the counters on, and their kernel.", "",
             "| rows as | rows | step ms | per row ms | x one row | fully connected | kernel |",
             "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['rows_as']} | {row['rows']} | {row['step_s'] * 1e3:.0f} | "
                     f"{row['step_s'] * 1e3 / row['rows']:.0f} | {row['x_one_row']:.2f} | "
                     f"{row['fully_connected_share']:.0%} | {', '.join(row['fully_connected_kernels'])} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="an exported folder (full size for meaningful numbers)")
    parser.add_argument("--out", required=True, help="report folder (one per CPU kind)")
    parser.add_argument("--rows", type=int, action="append", help="rows per step (repeat; default 1 2 3 4 6 8 12 16)")
    parser.add_argument("--cached", type=int, default=32, help="cached positions per sequence")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = args.rows or [1, 2, 3, 4, 6, 8, 12, 16]
    report = {"cpu": cpu_model(), "cpu_kind": cpu_kind(), "openvino": ov.get_version(),
              "inference_precision": ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string(),
              "model": args.model_dir, "cached": args.cached, "repeats": args.repeats,
              "date": time.strftime("%Y-%m-%d %H:%M"),
              "rows": measure(args.model_dir, sorted(set(rows) | {1}), args.cached, args.repeats)}
    write_report(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
