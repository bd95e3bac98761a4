"""`ovphi bench MODEL [MODEL ...]`: latency of each IR folder x backend over fixed scenarios, beside
the PyTorch model (`pytorch:CHECKPOINT`, fp32 and bf16) as the baseline a user would otherwise run.

A MODEL is an IR folder (run with each --backend) or BACKEND:FOLDER for one variant: pytorch:CHECKPOINT,
and optimum-stock:IR / genai-stock:IR for the two runtimes with their own defaults. Each scenario runs
once to warm up (excluded, but the variant's very first request after load is reported) and then
--runs times, each run with a different image (genai reuses the KV cache of an identical prompt, which
would hide the prefill). Answers have a fixed length (--max-new-tokens, end-of-sequence ignored). Peak
RSS, and the seconds from process start to a loaded model, are measured in a separate process per
variant (`ovphi ask`), since measuring memory disturbs timing. The roofline (roofline.py) says what
fraction of this machine's limits each TTFT and TPOT reaches. Writes report.json, report.md and
report.png into OUT, atomically (a folder written beside OUT, then renamed).
"""
import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import roofline
from .calibration.sources import BUILTIN
from .convert.manifest import package_versions, read_manifest
from .cpu import cpu_flags, cpu_model
from .errors import OvphiError
from .files import write_folder_atomically
from .model.image_processing_phi3_v import crop_grid
from .runtime import BACKENDS, ChatSession, load, parse_model_spec, read_image
from .runtime.options import add_ov_option, ov_options

SCENARIOS = ["image_nc4", "image_nc16", "two_images", "text_only", "second_turn"]
TORCH_SCENARIOS = ["image_nc4", "text_only"]  # a full-size fp32 PyTorch turn takes minutes on 2 cores
UNCACHED = {"pytorch", "optimum-stock", "genai-stock"}  # backends without ovphi's compiled-model cache
PROMPT = "Describe the image in detail."
METRICS = ["ttft_s", "tpot_s", "tokens_per_s", "vision_s", "prompt_tokens", "processed_tokens"]


def bench_images():
    """The builtin calibration pictures, varied from run to run."""
    names = [json.loads(line)["image"] for line in BUILTIN.read_text().splitlines()]
    return [read_image(BUILTIN.parent / name) for name in names]


def run_scenario(vlm, scenario, images, max_new_tokens):
    """(TurnTimings, CLIP crops encoded) of one measured turn of a scenario, or None when the backend
    cannot run it."""
    if scenario == "image_nc16" and vlm.backend.startswith("genai"):
        return None  # genai takes num_crops from the folder only
    generation = dict(max_new_tokens=max_new_tokens, ignore_eos=True)
    num_crops = 16 if scenario == "image_nc16" else None
    chat = ChatSession(vlm, num_crops, **generation)
    first, second = images
    if scenario == "second_turn":
        "".join(chat.ask(PROMPT, [first]))
        "".join(chat.ask("What else do you notice?"))
        given = []
    else:
        given = {"two_images": [first, second], "text_only": []}.get(scenario, [first])
        "".join(chat.ask(PROMPT if given else "Write a short story about a lighthouse.", given))
    crops = sum(columns * rows + 1 for columns, rows, _, _ in
                (crop_grid(*image.size, num_crops or 4) for image in given))
    return chat.last_timings, crops


def summarise(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_load(model_dir, backend, device, precision, extra):
    """Load seconds without the compiled-model cache, and with it once it has been filled (None for
    the backends that do not use it)."""
    options = dict(device=device, backend=backend, precision=precision, extra=extra)
    if backend in UNCACHED:
        vlm = load(model_dir, **options)
        return vlm, vlm.load_seconds, None
    cold = load(model_dir, cache=False, **options).load_seconds
    gc.collect()  # optimum's model objects hold reference cycles: free each load before the next
    load(model_dir, cache=True, **options)  # fills MODEL_DIR/model_cache
    gc.collect()
    vlm = load(model_dir, cache=True, **options)
    return vlm, cold, vlm.load_seconds


def memory_run(model_dir, backend, device, precision, extra, max_new_tokens):
    """{peak_rss_bytes, rss_file_bytes (file-mapped at the end), ready_s (process start to model loaded)}
    of a separate `ovphi ask` run on one image."""
    image = BUILTIN.parent / "scene_0.png"
    command = [sys.executable, "-m", "ovphi", "ask", str(model_dir), "--image", str(image), "--backend", backend,
               "--device", device, "--format", "json", "--max-new-tokens", str(max_new_tokens)]
    command += [f"--ov-option={key}={value}" for key, value in extra.items()]
    result = subprocess.run(command + (["--precision", precision] if precision else []),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise OvphiError(f"memory run of {model_dir} ({backend}) failed: {result.stderr.strip()[-200:]}")
    answer = json.loads(result.stdout)
    return {key: answer[key] for key in ("peak_rss_bytes", "rss_file_bytes", "ready_s")}


def first_request_after_warm_up(model_dir, backend, device, precision, extra, scenario, images, max_new_tokens):
    """A fresh (cached) load, vlm.warm_up(), then the scenario's first request: what `ovphi chat` gives a
    user who is still typing when the warm-up ends."""
    vlm = load(model_dir, backend=backend, device=device, precision=precision, extra=extra)
    seconds = vlm.warm_up()
    timings, _ = run_scenario(vlm, scenario, images, max_new_tokens)
    return {"warm_up_s": seconds, "ttft_after_warm_up_s": timings.ttft_s}


def language_weight_bytes(vlm, model_dir):
    """Bytes of the language model's weights as the backend reads them per generated token."""
    if vlm.backend != "pytorch":
        return roofline.weight_bytes(model_dir)
    decoder = list(vlm.model.model.layers.parameters()) + list(vlm.model.lm_head.parameters())
    return sum(p.numel() * p.element_size() for p in decoder)


def roof_fractions(stats, crops, config, weights, kv_bytes, machine, max_new_tokens):
    """The decode roof (bytes per token / bandwidth) and the prefill roof (FLOPs / matmul rate) of a
    scenario, and the fraction of each that the measured TPOT and TTFT reach."""
    bandwidth = machine["read_bandwidth_bytes_per_s"]["best"]
    rate = machine["matmul_flops_per_s"]["best"]
    middle = stats["prompt_tokens"]["median"] + max_new_tokens // 2
    decode_roof = roofline.decode_bytes(weights, config, middle, kv_bytes) / bandwidth
    processed = stats["processed_tokens"]  # None when the backend cannot tell
    prefill_roof = roofline.prefill_flops(config, processed["median"], crops) / rate if processed else None
    tpot, ttft = stats["tpot_s"]["median"], stats["ttft_s"]["median"]
    return {"decode_roof_s": decode_roof, "tpot_roof_fraction": decode_roof / tpot if tpot else None,
            "prefill_roof_s": prefill_roof, "ttft_roof_fraction": prefill_roof / ttft if prefill_roof else None}


def bench_variant(spec, backend, device, precision, extra, scenarios, runs, max_new_tokens, pictures, machine, log):
    model_dir, _ = parse_model_spec(spec)
    if backend.endswith("-stock"):
        extra = {}  # the runtimes with their own defaults take no options
    vlm, cold, warm = measure_load(model_dir, backend, device, precision, extra)
    manifest = read_manifest(model_dir) or {}
    weights_kind = precision if backend == "pytorch" else manifest.get("recipe", {}).get("weight_format", "unknown")
    config = json.loads((Path(model_dir) / "config.json").read_text())
    weights = language_weight_bytes(vlm, model_dir)
    kv_precision = precision or "f32" if backend == "pytorch" else extra.get("KV_CACHE_PRECISION", "u8")  # CPU default
    kv_bytes = {"f32": 4, "bf16": 2, "f16": 2, "u8": 1, "i8": 1, "u4": 0.5}.get(kv_precision.lower(), 1)
    variant = {"model": spec, "ir_dir": str(model_dir), "backend": backend, "device": device,
               "weights": weights_kind, "ov_options": extra, "language_weight_bytes": weights, "load_cold_s": cold,
               "load_cached_s": warm, "scenarios": {}}
    first_request = None
    for scenario in scenarios:
        if backend == "pytorch" and scenario not in TORCH_SCENARIOS:
            continue
        timings = []
        for run in range(runs + 1):  # run 0 warms up
            pair = (pictures[(2 * run) % len(pictures)], pictures[(2 * run + 1) % len(pictures)])
            measured = run_scenario(vlm, scenario, pair, max_new_tokens)
            if measured is None:
                break
            if run:
                timings.append(measured)
            elif first_request is None:
                first_request = {"scenario": scenario, "ttft_s": measured[0].ttft_s, "total_s": measured[0].total_s}
        if not timings:
            variant["scenarios"][scenario] = None
            continue
        stats = {m: summarise([getattr(t, m) for t, _ in timings]) for m in METRICS}
        stats["roofline"] = roof_fractions(stats, timings[0][1], config, weights, kv_bytes, machine, max_new_tokens)
        variant["scenarios"][scenario] = stats
        if first_request and first_request["scenario"] == scenario:
            first_request["steady_ttft_s"] = stats["ttft_s"]["median"]
        log(f"  {backend:<7} {Path(model_dir).name:<16} {scenario:<12} TTFT {stats['ttft_s']['median']:.3f} s"
            f"  TPOT {stats['tpot_s']['median'] * 1000:.1f} ms")
    del vlm
    gc.collect()
    if first_request and not backend.endswith("-stock"):
        first_request |= first_request_after_warm_up(model_dir, backend, device, precision, extra,
                                                     first_request["scenario"], pictures[:2], max_new_tokens)
        gc.collect()  # the memory run loads its own copy: free ours first
    variant["first_request"] = first_request
    variant |= memory_run(model_dir, backend, device, precision, extra, max_new_tokens)
    return variant


def machine_facts():
    import openvino as ov

    return {"cpu": cpu_model(), "cpu_flags": sorted(cpu_flags()), "cores": os.cpu_count(), "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf(
        "SC_PHYS_PAGES"), "openvino_devices": ov.Core().available_devices, "python": platform.python_version(),
        "versions": package_versions()}


def label(index, variant):
    return f"{index} {Path(variant['ir_dir']).name}"


def markdown(report, baseline):
    """The report as Markdown tables: one row per variant and scenario, ratios against the baseline,
    the fraction of the roofline reached; then load times and memory; then the machine's limits."""
    base = report["variants"][baseline]
    lines = [f"# ovphi bench — {report['machine']['cpu']}, {report['machine']['cores']} cores",
             "", f"{report['runs']} runs after a warm-up, {report['max_new_tokens']} new tokens, medians "
             f"(min–max). Ratio: TTFT / TPOT against variant {baseline}. Roof: the fraction of this machine's "
             f"limit reached (TTFT: prefill FLOPs / {report['roofline_machine']['matmul_precision']} matmul rate; "
             "TPOT: bytes read per token / read "
             "bandwidth).", "",
             "| variant | backend | weights | scenario | prompt tok | TTFT s | TPOT ms | tok/s | vision s | "
             "TTFT ratio | TPOT ratio | TTFT roof | TPOT roof |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for index, variant in enumerate(report["variants"]):
        for scenario, stats in variant["scenarios"].items():
            if stats is None:
                continue
            ref = base["scenarios"].get(scenario)
            ratio = lambda m: (f"{stats[m]['median'] / ref[m]['median']:.2f}"  # noqa: E731
                               if ref and stats[m] and ref[m] and ref[m]["median"] else "–")
            roof = stats["roofline"]
            percent = lambda f: f"{100 * f:.0f} %" if f else "–"  # noqa: E731
            lines.append(
                f"| {label(index, variant)} | {variant['backend']} | {variant['weights']} | {scenario} | "
                f"{stats['prompt_tokens']['median']:.0f} | {stats['ttft_s']['median']:.3f} "
                f"({stats['ttft_s']['min']:.3f}–{stats['ttft_s']['max']:.3f}) | "
                f"{stats['tpot_s']['median'] * 1000:.1f} | {stats['tokens_per_s']['median']:.1f} | "
                f"{stats['vision_s']['median']:.3f} | {ratio('ttft_s')} | {ratio('tpot_s')} | "
                f"{percent(roof['ttft_roof_fraction'])} | {percent(roof['tpot_roof_fraction'])} |")
    lines += ["", "Load: in the bench process, without and with the compiled-model cache. Start to loaded: a fresh"
              " `ovphi ask` process (interpreter, imports, load), which also gives the peak RSS of one image turn"
              " and, in brackets, how much of the RSS at its end maps files (weights read through mmap: page"
              " cache the kernel can reclaim)."
              " First request: the variant's first turn after load (the CPU plugin repacks the weights on the"
              " first inference), then after a fresh load and `warm_up()`, beside the same scenario's median.",
              "", "| variant | backend | load cold s | load cached s | start to loaded s | first request TTFT s | "
              "warm-up s | first request after warm-up s | steady TTFT s | peak RSS GB (file-mapped) | LM weights GB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for index, variant in enumerate(report["variants"]):
        cached = f"{variant['load_cached_s']:.2f}" if variant["load_cached_s"] is not None else "–"
        first = variant["first_request"]
        first_cells = "– | – | – | –"
        if first and first.get("steady_ttft_s"):
            warm = (f"{first['warm_up_s']:.2f} | {first['ttft_after_warm_up_s']:.3f}" if "warm_up_s" in first
                    else "– | –")
            first_cells = f"{first['ttft_s']:.3f} ({first['scenario']}) | {warm} | {first['steady_ttft_s']:.3f}"
        lines.append(f"| {label(index, variant)} | {variant['backend']} | {variant['load_cold_s']:.2f} | {cached} | "
                     f"{variant['ready_s']:.2f} | {first_cells} | {variant['peak_rss_bytes'] / 1e9:.2f} "
                     f"({variant['rss_file_bytes'] / 1e9:.2f}) | "
                     f"{variant['language_weight_bytes'] / 1e9:.2f} |")
    limits = report["roofline_machine"]
    bandwidth, rate = limits["read_bandwidth_bytes_per_s"], limits["matmul_flops_per_s"]
    lines += ["", f"Machine limits (best / median): read bandwidth {bandwidth['best'] / 1e9:.1f} / "
              f"{bandwidth['median'] / 1e9:.1f} GB/s, {limits['matmul_precision']} matmul {rate['best'] / 1e9:.0f} / "
              f"{rate['median'] / 1e9:.0f} GFLOP/s; other processes used {limits['other_processes_cpu_percent']:.0f} %"
              " of the CPU when they were measured."]
    return "\n".join(lines) + "\n"


def plot(report, path):
    """TTFT and TPOT per variant for the one-image scenario, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ttft, tpot = [], [], []
    for index, variant in enumerate(report["variants"]):
        stats = variant["scenarios"].get("image_nc4")
        if stats:
            labels.append(f"{label(index, variant)}\n{variant['backend']} {variant['weights']}")
            ttft.append(stats["ttft_s"]["median"])
            tpot.append(stats["tpot_s"]["median"] * 1000)
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(8, 2 * len(labels)), 4))
    left.bar(labels, ttft, color="tab:blue")
    left.set_title("time to first token (s), one image, 4 crops")
    right.bar(labels, tpot, color="tab:orange")
    right.set_title("time per output token (ms)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def bench(models, out, backends=("optimum", "genai"), device="CPU", scenarios=SCENARIOS, runs=3,
          max_new_tokens=32, baseline=0, torch_precisions=("f32", "bf16"), ov_options=None, log=print):
    """Benchmark IR folders x backends (and `pytorch:CHECKPOINT` x torch_precisions) and write
    OUT/report.{json,md,png}. Returns the report."""
    out = Path(out)
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise OvphiError(f"unknown scenario {unknown[0]}: choose from {', '.join(SCENARIOS)}")
    plan = []
    for spec in models:
        _, backend = parse_model_spec(spec)
        if backend == "pytorch":
            plan += [(spec, backend, p) for p in torch_precisions]
        else:
            plan += [(spec, b, None) for b in ([backend] if backend else backends)]
    if not 0 <= baseline < len(plan):
        raise OvphiError(f"--baseline {baseline} is not a variant index (0 to {len(plan) - 1})")
    pictures = bench_images()
    machine = roofline.measure_machine()
    log(f"  read bandwidth {machine['read_bandwidth_bytes_per_s']['best'] / 1e9:.1f} GB/s, "
        f"{machine['matmul_precision']} matmul {machine['matmul_flops_per_s']['best'] / 1e9:.0f} GFLOP/s")
    variants = []
    for spec, backend, precision in plan:
        variants.append(bench_variant(spec, backend, device, precision, dict(ov_options or {}), scenarios, runs,
                                      max_new_tokens, pictures, machine, log))
        gc.collect()
    report = {"machine": machine_facts(), "runs": runs, "max_new_tokens": max_new_tokens,
              "date": time.strftime("%Y-%m-%d %H:%M"), "units": "seconds, bytes, tokens per second",
              "roofline_machine": machine, "variants": variants}

    def write(folder):
        (folder / "report.json").write_text(json.dumps(report, indent=2))
        (folder / "report.md").write_text(markdown(report, baseline))
        plot(report, folder / "report.png")

    write_folder_atomically(out, write)
    return report


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="IR folders to compare (each with every --backend), "
                                                  "BACKEND:FOLDER for one variant, pytorch:CHECKPOINT for the baseline")
    parser.add_argument("--out", default="reports/bench", help="report folder")
    parser.add_argument("--backend", action="append", choices=[b for b in BACKENDS if b != "pytorch"],
                        help="repeat to compare (default: both)")
    parser.add_argument("--torch-precision", action="append", choices=["f32", "bf16"],
                        help="dtypes of pytorch:CHECKPOINT (repeat; default both)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--scenario", action="append", help=f"repeat; default all: {', '.join(SCENARIOS)}")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--baseline", type=int, default=0, help="variant index the ratios compare against")
    add_ov_option(parser)
    return parser


def main(args):
    if args.runs < 1:
        raise OvphiError("--runs must be at least 1")
    bench(args.models, args.out, backends=args.backend or ("optimum", "genai"), device=args.device,
          scenarios=args.scenario or SCENARIOS, runs=args.runs, max_new_tokens=args.max_new_tokens,
          baseline=args.baseline, torch_precisions=args.torch_precision or ("f32", "bf16"),
          ov_options=ov_options(args))
    print((Path(args.out) / "report.md").read_text())
