"""Why a later turn costs more than it should: OpenVINO's stateful attention, reduced to one plain layer.

One attention layer of Phi-3-mini's shape (32 heads of 96; the K and V caches are OpenVINO states: ReadValue,
Gather by beam_idx, Concat with the new tokens, Assign, then ScaledDotProductAttention with a mask, as the
exported language model has them, so the CPU plugin fuses it into its stateful SDPA), timed on the CPU for
each KV cache precision, and once with the fusion prevented (the plugin then decomposes the attention into
MatMul and Softmax over an f32 state):
  - step: one new token after CACHED cached positions (a decode step);
  - later turn: NEW tokens after CACHED cached positions, in one call (what a second turn's prefill does);
  - NEW steps: the same NEW tokens one call each (what a decode of NEW tokens does);
  - from empty: the same CACHED + NEW tokens in one call with an empty cache (a first turn's prefill);
  - new alone: NEW tokens with an empty cache.
Per new token per cached position: the later turn's excess, (later turn - new alone) / (NEW x CACHED),
against a from-empty prefill's attention, from empty / ((CACHED + NEW)^2 / 2) (each token attends to the
positions before it); x 32 layers gives the whole model's cost.

    python benchmarks/sdpa_later_turns.py --out benchmarks/reports/sdpa-later-turns-amd-epyc
"""
import argparse
import statistics
import time

import numpy as np
import openvino as ov
from openvino import opset13 as ops

from ovphi.cpu import cpu_kind, cpu_model
from ovphi.files import write_report

HEADS, HEAD_SIZE, LAYERS = 32, 96, 32  # Phi-3-mini


def attention_layer(fuse=True):
    """query, key, value of the new tokens [1, HEADS, new, HEAD_SIZE], mask [1, 1, new, cached + new], beam_idx [1]
    -> attention output; the keys and values of every call are kept in two states. fuse=False puts a no-op
    (a Maximum with the lowest float) between the states and the attention, which the fusion does not match."""
    shape = [1, HEADS, -1, HEAD_SIZE]
    query, key, value = (ops.parameter(shape, ov.Type.f32, name=name) for name in ("query", "key", "value"))
    mask = ops.parameter([1, 1, -1, -1], ov.Type.f32, name="mask")
    beam_idx = ops.parameter([1], ov.Type.i32, name="beam_idx")
    sinks, merged = [], []
    for name, new in (("past_key", key), ("past_value", value)):
        empty = ops.constant(np.zeros([1, HEADS, 0, HEAD_SIZE], np.float32))
        state = ops.read_value(empty, name, ov.Type.f32, ov.PartialShape(shape))
        both = ops.concat([ops.gather(state, beam_idx, 0), new], 2)
        sinks.append(ops.assign(both, name))
        merged.append(both if fuse else ops.maximum(both, ops.constant(np.float32(np.finfo(np.float32).min))))
    output = ops.scaled_dot_product_attention(query, *merged, mask, causal=False)
    return ov.Model([ops.result(output)], sinks, [query, key, value, mask, beam_idx], "attention")


def inputs(new, cached, rng):
    tokens = [rng.standard_normal([1, HEADS, new, HEAD_SIZE], dtype=np.float32) for _ in range(3)]
    mask = np.triu(np.full([new, cached + new], -np.inf, np.float32), k=cached + 1)[None, None]
    return dict(zip(("query", "key", "value"), tokens)) | {"mask": mask, "beam_idx": np.zeros([1], np.int32)}


def seconds(request, new, cached, rng, repeats, calls=1):
    """Median seconds of `calls` calls of `new` tokens each, after `cached` cached positions (filled by an
    untimed call)."""
    times = []
    for _ in range(repeats):
        request.reset_state()
        if cached:
            request.infer(inputs(cached, 0, rng))
        feeds = [inputs(new, cached + call * new, rng) for call in range(calls)]
        start = time.perf_counter()
        for feed in feeds:
            request.infer(feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fused(compiled):
    """Whether the plugin runs the layer as its stateful SDPA: the attention node reads the states itself."""
    return any(op.get_rt_info()["layerType"].astype(str) == "ScaledDotProductAttention"
               and any(i.get_source_output().get_node().get_rt_info()["layerType"].astype(str) == "MemoryInput"
                       for i in op.inputs())
               for op in compiled.get_runtime_model().get_ops())


def measure(precision, fuse, cached, new, repeats):
    core = ov.Core()
    compiled = core.compile_model(attention_layer(fuse), "CPU", {"KV_CACHE_PRECISION": precision} if fuse else {})
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    seconds(request, 1, 16, rng, 1)  # first inference
    row = {"kv_cache": precision if fuse else "f32 (unfused)", "fused_stateful_sdpa": fused(compiled),
           "cached": cached, "new": new,
           "step_s": seconds(request, 1, cached, rng, repeats),
           "later_turn_s": seconds(request, new, cached, rng, repeats),
           "new_steps_s": seconds(request, 1, cached, rng, repeats, calls=new),
           "from_empty_s": seconds(request, cached + new, 0, rng, repeats),
           "new_alone_s": seconds(request, new, 0, rng, repeats)}
    row["excess_per_token_position_s"] = (row["later_turn_s"] - row["new_alone_s"]) / (new * cached)
    row["from_empty_per_token_position_s"] = row["from_empty_s"] / ((cached + new) ** 2 / 2)
    return row


def markdown(report):
    lines = [f"# Stateful attention on a later turn — {report['cpu']}", "",
             f"One attention layer of Phi-3-mini's shape ({HEADS} heads x {HEAD_SIZE}), KV cache in OpenVINO states,"
             f" CPU plugin, OpenVINO {report['openvino']}; median of {report['repeats']} repeats; one layer's"
             f" milliseconds. Per new token per cached position, in microseconds for the whole model ({LAYERS}"
             " layers): a later turn's excess, (later turn - new alone) / (new x cached), beside a from-empty"
             " prefill's, from empty / ((cached + new)^2 / 2).", "",
             "| KV cache | stateful SDPA | cached | new | step | later turn | new steps | from empty | new alone |"
             " later turn us | from empty us |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        model_us = lambda key: f"{row[key] * LAYERS * 1e6:.1f}"  # noqa: E731
        lines.append(f"| {row['kv_cache']} | {'yes' if row['fused_stateful_sdpa'] else 'no'} | {row['cached']} | "
                     f"{row['new']} | {row['step_s'] * 1e3:.2f} | {row['later_turn_s'] * 1e3:.2f} | "
                     f"{row['new_steps_s'] * 1e3:.2f} | {row['from_empty_s'] * 1e3:.2f} | "
                     f"{row['new_alone_s'] * 1e3:.2f} | {model_us('excess_per_token_position_s')} | "
                     f"{model_us('from_empty_per_token_position_s')} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="report folder (one per CPU kind)")
    parser.add_argument("--precision", action="append", help="KV_CACHE_PRECISION (repeat; default: u8 f16 f32)")
    parser.add_argument("--cached", type=int, action="append", help="cached positions (repeat; default 800 1600)")
    parser.add_argument("--new", type=int, action="append", help="new tokens of the later turn (repeat; default 16 64)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    variants = [(precision, True) for precision in args.precision or ["u8", "f16", "f32"]] + [("f32", False)]
    rows = [measure(precision, fuse, cached, new, args.repeats) for precision, fuse in variants
            for cached in args.cached or [800, 1600] for new in args.new or [16, 64]]
    report = {"cpu": cpu_model(), "cpu_kind": cpu_kind(), "openvino": ov.get_version(), "repeats": args.repeats,
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    write_report(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
