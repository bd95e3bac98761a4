"""`ovphi bench IR_DIR [IR_DIR ...]`: latency of each IR folder x backend over fixed scenarios.

Each scenario runs once to warm up (excluded) and then --runs times, each run with a different image
(genai reuses the KV cache of an identical prompt, which would hide the prefill). Answers have a fixed
length (--max-new-tokens, end-of-sequence ignored). Peak RSS is measured in a separate process per
variant (`ovphi ask`), since measuring memory disturbs timing. Writes report.json, report.md and
report.png into OUT, atomically (a folder written beside OUT, then renamed).
"""
import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .calibration.sources import BUILTIN
from .convert.manifest import package_versions, read_manifest
from .errors import OvphiError
from .runtime import ChatSession, load, read_image

SCENARIOS = ["image_nc4", "image_nc16", "two_images", "text_only", "second_turn"]
PROMPT = "Describe the image in detail."
METRICS = ["ttft_s", "tpot_s", "tokens_per_s", "vision_s", "prompt_tokens", "processed_tokens"]


def bench_images():
    """The builtin calibration pictures, varied from run to run."""
    names = [json.loads(line)["image"] for line in BUILTIN.read_text().splitlines()]
    return [read_image(BUILTIN.parent / name) for name in names]


def run_scenario(vlm, scenario, images, max_new_tokens):
    """TurnTimings of one measured turn of a scenario, or None when the backend cannot run it."""
    if scenario == "image_nc16" and vlm.backend == "genai":
        return None  # genai takes num_crops from the folder only
    generation = dict(max_new_tokens=max_new_tokens, ignore_eos=True)
    num_crops = 16 if scenario == "image_nc16" else None
    chat = ChatSession(vlm, num_crops, **generation)
    first, second = images
    if scenario == "second_turn":
        "".join(chat.ask(PROMPT, [first]))
        "".join(chat.ask("What else do you notice?"))
    else:
        given = {"two_images": [first, second], "text_only": []}.get(scenario, [first])
        "".join(chat.ask(PROMPT if given else "Write a short story about a lighthouse.", given))
    return chat.last_timings


def summarise(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_load(ir_dir, backend, device):
    """Load seconds without the compiled-model cache, and with it once it has been filled."""
    cold = load(ir_dir, device=device, backend=backend, cache=False).load_seconds
    gc.collect()  # optimum's model objects hold reference cycles: free each load before the next
    load(ir_dir, device=device, backend=backend, cache=True)  # fills IR_DIR/model_cache
    gc.collect()
    vlm = load(ir_dir, device=device, backend=backend, cache=True)
    return vlm, cold, vlm.load_seconds


def peak_rss(ir_dir, backend, device, max_new_tokens):
    """Peak RSS of a separate `ovphi ask` run on one image (bytes)."""
    image = BUILTIN.parent / "scene_0.png"
    result = subprocess.run([sys.executable, "-m", "ovphi", "ask", str(ir_dir), "--image", str(image),
                             "--backend", backend, "--device", device, "--format", "json", "--max-new-tokens",
                             str(max_new_tokens)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise OvphiError(f"memory run of {ir_dir} ({backend}) failed: {result.stderr.strip()[-200:]}")
    return json.loads(result.stdout)["peak_rss_bytes"]


def bench_variant(ir_dir, backend, device, scenarios, runs, max_new_tokens, pictures, log):
    vlm, cold, warm = measure_load(ir_dir, backend, device)
    manifest = read_manifest(ir_dir) or {}
    variant = {"ir_dir": str(ir_dir), "backend": backend, "device": device,
               "weights": manifest.get("recipe", {}).get("weight_format", "unknown"),
               "load_cold_s": cold, "load_cached_s": warm, "scenarios": {}}
    for scenario in scenarios:
        timings = []
        for run in range(runs + 1):  # run 0 warms up
            pair = (pictures[(2 * run) % len(pictures)], pictures[(2 * run + 1) % len(pictures)])
            t = run_scenario(vlm, scenario, pair, max_new_tokens)
            if t is None:
                break
            if run:
                timings.append(t)
        if not timings:
            variant["scenarios"][scenario] = None
            continue
        variant["scenarios"][scenario] = {m: summarise([getattr(t, m) for t in timings]) for m in METRICS}
        log(f"  {backend:<7} {Path(ir_dir).name:<16} {scenario:<12} TTFT "
            f"{variant['scenarios'][scenario]['ttft_s']['median']:.3f} s")
    variant["peak_rss_bytes"] = peak_rss(ir_dir, backend, device, max_new_tokens)
    return variant


def machine_facts():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import openvino as ov

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf(
        "SC_PHYS_PAGES"), "openvino_devices": ov.Core().available_devices, "python": platform.python_version(),
        "versions": package_versions()}


def markdown(report, baseline):
    """The report as Markdown tables: one row per variant and scenario, a ratio against the baseline."""
    base = report["variants"][baseline]
    lines = [f"# ovphi bench — {report['machine']['cpu']}, {report['machine']['cores']} cores",
             "", f"{report['runs']} runs after a warm-up, {report['max_new_tokens']} new tokens, medians "
             f"(min–max). Ratio: TTFT / TPOT against variant {baseline}.", "",
             "| variant | backend | weights | scenario | prompt tok | TTFT s | TPOT ms | tok/s | vision s | "
             "TTFT ratio | TPOT ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for index, variant in enumerate(report["variants"]):
        for scenario, stats in variant["scenarios"].items():
            if stats is None:
                continue
            ref = base["scenarios"].get(scenario)
            ratio = lambda m: (f"{stats[m]['median'] / ref[m]['median']:.2f}"  # noqa: E731
                               if ref and stats[m] and ref[m] and ref[m]["median"] else "–")
            tpot = stats["tpot_s"]
            lines.append(
                f"| {index} {Path(variant['ir_dir']).name} | {variant['backend']} | {variant['weights']} | "
                f"{scenario} | {stats['prompt_tokens']['median']:.0f} | {stats['ttft_s']['median']:.3f} "
                f"({stats['ttft_s']['min']:.3f}–{stats['ttft_s']['max']:.3f}) | "
                f"{tpot['median'] * 1000:.1f} | {stats['tokens_per_s']['median']:.1f} | "
                f"{stats['vision_s']['median']:.3f} | {ratio('ttft_s')} | {ratio('tpot_s')} |")
    lines += ["", "| variant | load cold s | load cached s | peak RSS GB |", "|---|---|---|---|"]
    for index, variant in enumerate(report["variants"]):
        lines.append(f"| {index} {Path(variant['ir_dir']).name} {variant['backend']} | {variant['load_cold_s']:.2f} |"
                     f" {variant['load_cached_s']:.2f} | {variant['peak_rss_bytes'] / 1e9:.2f} |")
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
            labels.append(f"{index}:{Path(variant['ir_dir']).name}\n{variant['backend']}")
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


def bench(ir_dirs, out, backends=("optimum", "genai"), device="CPU", scenarios=SCENARIOS, runs=3,
          max_new_tokens=32, baseline=0, log=print):
    """Benchmark IR folders x backends and write OUT/report.{json,md,png}. Returns the report."""
    out = Path(out)
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise OvphiError(f"unknown scenario {unknown[0]}: choose from {', '.join(SCENARIOS)}")
    pictures = bench_images()
    variants = []
    for ir_dir in ir_dirs:
        for backend in backends:
            variants.append(bench_variant(ir_dir, backend, device, scenarios, runs, max_new_tokens, pictures, log))
            gc.collect()
    report = {"machine": machine_facts(), "runs": runs, "max_new_tokens": max_new_tokens,
              "date": time.strftime("%Y-%m-%d %H:%M"), "units": "seconds, bytes, tokens per second",
              "variants": variants}
    if not 0 <= baseline < len(variants):
        raise OvphiError(f"--baseline {baseline} is not a variant index (0 to {len(variants) - 1})")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "report.json").write_text(json.dumps(report, indent=2))
    (partial / "report.md").write_text(markdown(report, baseline))
    plot(report, partial / "report.png")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return report


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ir_dirs", nargs="+", help="IR folders to compare")
    parser.add_argument("--out", default="reports/bench", help="report folder")
    parser.add_argument("--backend", action="append", choices=["optimum", "genai"],
                        help="repeat to compare (default: both)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--scenario", action="append", help=f"repeat; default all: {', '.join(SCENARIOS)}")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--baseline", type=int, default=0, help="variant index the ratios compare against")
    return parser


def main(args):
    if args.runs < 1:
        raise OvphiError("--runs must be at least 1")
    bench(args.ir_dirs, args.out, backends=args.backend or ("optimum", "genai"), device=args.device,
          scenarios=args.scenario or SCENARIOS, runs=args.runs, max_new_tokens=args.max_new_tokens,
          baseline=args.baseline)
    print((Path(args.out) / "report.md").read_text())
