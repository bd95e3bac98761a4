"""Latency of each model folder x engine over the scenarios, beside the PyTorch model
(`pytorch:CHECKPOINT`, fp32 and bf16) as the baseline a user would otherwise run.

Each scenario runs once to warm up (excluded, but the variant's very first request after load is
reported) and then `runs` times, each run with other images (genai reuses the KV cache of an identical
prompt, which would hide the prefill). Answers have a fixed length (end-of-sequence ignored). Peak RSS,
and the seconds from process start to a loaded model, are measured in a separate `ovphi ask` process
per variant, since measuring memory disturbs timing. The roofline (roofline.py) says what fraction of
this machine's limits each TTFT and TPOT reaches.
"""
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from .. import roofline
from ..calibration.sources import BUILTIN
from ..commands.options import device_arguments
from ..convert.manifest import package_versions
from ..cpu import cpu_flags, cpu_kind, cpu_model
from ..errors import OvphiError
from ..files import check_model_folder, check_replaceable, write_folder_atomically
from ..images import read_image
from ..runtime import RuntimeOptions, load, registry
from ..runtime.timings import TurnTimings
from .memory_limit import MemoryLimit, evict_from_page_cache
from .report import markdown, plot
from .scenarios import SCENARIOS, crops_of, run_scenario, runs_on
from .weights import weights_of

REPORT_FILES = ("report.json", "report.md", "report.png")
METRICS = ["ttft_s", "tpot_s", "tokens_per_s", "vision_s", "prompt_tokens", "processed_tokens"]


BENCH_IMAGES = [BUILTIN.parent / json.loads(line)["image"] for line in BUILTIN.read_text().splitlines()]  # varied per run


def marked(image, tag):
    """A copy of image with a few pixels set from `tag`: the same prefill cost, another content, so that no
    cache of an earlier conversation (ovphi's prefix cache, genai's prefix caching) serves it."""
    copy = image.copy()
    for offset, value in enumerate(tag):
        copy.putpixel((offset, 0), (value % 256, (value // 256) % 256, 7 * offset % 256))
    return copy


def shown_path(run, paths):
    """The picture a fresh-process run shows (each run another one)."""
    return paths[(2 * run) % len(paths)]


def summarise(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_load(model_dir, backend, options):
    """(engine, load seconds without the compiled-model cache, with it once filled: None for engines that
    do not use it)."""
    engine_class = registry.engine_class(backend)
    engine = engine_class(model_dir, replace(options, cache=False))
    if not engine.capabilities.uses_compiled_cache(engine.device):  # the device the engine checked and runs on
        return engine, engine.load_seconds, None
    cold = engine.load_seconds
    del engine
    gc.collect()  # optimum's model objects hold reference cycles: free each load before the next
    engine_class(model_dir, options)  # fills MODEL_DIR/model_cache
    gc.collect()
    engine = engine_class(model_dir, options)
    return engine, cold, engine.load_seconds


def ask_process(model_dir, backend, options, max_new_tokens, image, limit=None):
    """The JSON answer of a separate `ovphi ask` process on one image (ignoring end-of-sequence); with `limit`
    (a MemoryLimit), run inside it. Without a prefix cache, as `ovphi ask` runs by default."""
    options = replace(options, prefix_cache_mb=0)
    command = [sys.executable, "-m", "ovphi", "ask", str(model_dir), "--image", str(image), "--backend", backend,
               "--format", "json", "--max-new-tokens", str(max_new_tokens),
               "--prompt", SCENARIOS["image_nc4"].turns[0], *device_arguments(options)]
    started = time.monotonic()
    result = subprocess.run(limit.wrap(command) if limit else command, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        killed = limit and limit.readings()["oom_kills"]
        reason = (f"killed by the OOM killer after {time.monotonic() - started:.0f} s" if killed
                  else result.stderr.strip()[-200:])
        raise OvphiError(f"`ovphi ask` on {model_dir} ({backend}) failed: {reason}")
    return json.loads(result.stdout)


def memory_run(model_dir, backend, options, max_new_tokens):
    """{peak_rss_bytes, rss_anon_bytes and rss_file_bytes (anonymous and file-mapped at the end), ready_s
    (process start to model loaded)} of a separate `ovphi ask` run on one image."""
    answer = ask_process(model_dir, backend, options, max_new_tokens, BUILTIN.parent / "scene_0.png")
    return {key: answer[key] for key in ("peak_rss_bytes", "rss_anon_bytes", "rss_file_bytes", "ready_s")}


def cold_ask(model_dir, backend, options, max_new_tokens, image, memory_limit_bytes=None):
    """(TurnTimings whose TTFT counts from the process's start, crops, what the memory limit did: None
    without one) of a fresh `ovphi ask` process, the folder's files first dropped from the page cache (a
    process under a limit is charged for what it reads; the run without one starts as cold)."""
    evict_from_page_cache(model_dir)
    if memory_limit_bytes is None:
        answer, readings = ask_process(model_dir, backend, options, max_new_tokens, image), None
    else:
        with MemoryLimit(memory_limit_bytes) as limit:
            answer = ask_process(model_dir, backend, options, max_new_tokens, image, limit)
            readings = limit.readings()
    timings = TurnTimings(**{k: v for k, v in answer["timings"].items() if k != "tokens_per_s"})
    return [replace(timings, ttft_s=answer["ready_s"] + timings.ttft_s)], crops_of([read_image(image)], 4), readings


def first_request_after_warm_up(model_dir, backend, options, scenario, pictures, max_new_tokens):
    """A fresh (cached) load, warm_up(), then the scenario's first request: what `ovphi chat` gives a user
    who is still typing when the warm-up ends."""
    engine = load(model_dir, backend, options)
    seconds = engine.warm_up()
    turns, _ = run_scenario(engine, SCENARIOS[scenario], pictures, max_new_tokens)
    return {"warm_up_s": seconds, "ttft_after_warm_up_s": turns[-1].ttft_s}


def roof_fractions(stats, crops, config, weights, kv_bytes, machine, max_new_tokens):
    """The decode roof (bytes per token / bandwidth) and the prefill roof (FLOPs / matmul rate) of a
    scenario, and the fraction of each that the measured TPOT and TTFT reach."""
    bandwidth = machine["read_bandwidth_bytes_per_s"]["best"]
    rate = machine["matmul_flops_per_s"]["best"]
    middle = stats["prompt_tokens"]["median"] + max_new_tokens // 2
    decode_roof = roofline.decode_bytes(weights, config, middle, kv_bytes) / bandwidth if weights else None
    processed = stats["processed_tokens"]  # None when the engine cannot tell
    prefill_roof = roofline.prefill_flops(config, processed["median"], crops) / rate if processed else None
    tpot, ttft = stats["tpot_s"]["median"], stats["ttft_s"]["median"]
    return {"decode_roof_s": decode_roof, "tpot_roof_fraction": decode_roof / tpot if tpot and decode_roof else None,
            "prefill_roof_s": prefill_roof, "ttft_roof_fraction": prefill_roof / ttft if prefill_roof else None}


def bench_variant(model_dir, backend, options, scenarios, runs, max_new_tokens, pictures, machine, log):
    engine, cold, warm = measure_load(model_dir, backend, options)
    options = engine.options  # the stock runtimes keep their own defaults
    label, weights, kv_bytes = weights_of(engine)
    variant = {"model": str(model_dir), "ir_dir": str(model_dir), "backend": backend, "device": options.device,
               "weights": label, "ov_options": dict(options.properties),
               "language_weight_bytes": weights, "load_cold_s": cold, "load_cached_s": warm,
               "scenarios": dict.fromkeys(scenarios)}
    first_request, kind, config = None, type(engine), engine.config
    # in-process scenarios first; then the engine is freed: a fresh process shares whatever this one still maps,
    # which the page cache cannot drop and the fresh process's memory cgroup is not charged for
    for scenario_number, name in sorted(enumerate(scenarios), key=lambda item: SCENARIOS[item[1]].fresh_process):
        scenario = SCENARIOS[name]
        if not runs_on(scenario, kind):
            continue
        if scenario.fresh_process and engine is not None:
            engine = None
            gc.collect()
        timings = []
        for run in range(runs + 1):  # run 0 warms up
            shown = [marked(pictures[(2 * run + i) % len(pictures)], (scenario_number, run, i)) for i in range(2)]
            if scenario.fresh_process:
                if run:
                    try:
                        timings.append(cold_ask(model_dir, backend, options, max_new_tokens,
                                                shown_path(run, BENCH_IMAGES), scenario.memory_limit_bytes))
                    except OvphiError as error:
                        if scenario.memory_limit_bytes is None:
                            raise
                        timings.append(str(error))  # what the limit did is the result: killed, or no limit
                continue
            measured = run_scenario(engine, scenario, shown, max_new_tokens)
            if run:
                timings.append(measured)
            elif first_request is None:
                first = measured[0][-1]
                first_request = {"scenario": name, "ttft_s": first.ttft_s, "total_s": first.total_s}
        failures = [failure for failure in timings if isinstance(failure, str)]
        if failures:
            variant["scenarios"][name] = {"failed": failures[0]}
            log(f"  {backend:<7} {Path(model_dir).name:<16} {name:<12} {failures[0]}")
            continue
        stats = {m: summarise([getattr(turns[-1], m) for turns, *_ in timings]) for m in METRICS}
        stats["roofline"] = roof_fractions(stats, timings[0][1], config, weights, kv_bytes,
                                           machine, max_new_tokens)
        if scenario.memory_limit_bytes:
            stats["memory_limit"] = [readings for _, _, readings in timings]
        if len(scenario.turns) > 1:
            stats["turns"] = [{m: summarise([getattr(turns[index], m) for turns, *_ in timings])
                               for m in ("ttft_s", "prompt_tokens", "processed_tokens", "answer_tokens")}
                              for index in range(len(scenario.turns))]
        if scenario.repeat:
            stats["prefix_cache"] = [turns[-1].prefix_cache for turns, *_ in timings]
        variant["scenarios"][name] = stats
        if first_request and first_request["scenario"] == name:
            first_request["steady_ttft_s"] = stats["ttft_s"]["median"]
        log(f"  {backend:<7} {Path(model_dir).name:<16} {name:<12} TTFT {stats['ttft_s']['median']:.3f} s"
            f"  TPOT {stats['tpot_s']['median'] * 1000:.1f} ms")
    engine = None
    gc.collect()
    if first_request and registry.engine_class(backend).capabilities.runtime_options:  # stock: no warm_up
        first_request |= first_request_after_warm_up(model_dir, backend, options, first_request["scenario"],
                                                     pictures[:2], max_new_tokens)
        gc.collect()  # the memory run loads its own copy: free ours first
    variant["first_request"] = first_request
    variant |= memory_run(model_dir, backend, options, max_new_tokens)
    return variant


def check_same_cpu(out, force):
    """Refuse to replace a report made on another kind of CPU: each kind's numbers keep their own folder."""
    previous = Path(out) / "report.json"
    if force or not previous.exists():
        return
    machine = json.loads(previous.read_text()).get("machine", {})
    made_on = cpu_kind(machine.get("cpu"), set(machine.get("cpu_flags", [])))
    if made_on != cpu_kind():
        raise OvphiError(f"{out} holds a report made on another kind of CPU ({made_on}; this one is {cpu_kind()}):"
                         " choose another --out (or --force)")


def machine_facts():
    import openvino as ov

    return {"cpu": cpu_model(), "cpu_kind": cpu_kind(), "cpu_flags": sorted(cpu_flags()), "cores": os.cpu_count(),
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "openvino_devices": ov.Core().available_devices, "python": platform.python_version(),
            "versions": package_versions()}


def plan_variants(models, backends, torch_precisions):
    """(folder, engine name, precision) of every variant: each folder with each backend, NAME:FOLDER with
    its engine, and a checkpoint engine once per torch precision."""
    plan = []
    for spec in models:
        folder, backend = registry.split_spec(spec)
        for name in [backend] if backend else backends:
            if registry.engine_class(name).capabilities.folder == "checkpoint":
                plan += [(folder, name, precision) for precision in torch_precisions]
            else:
                plan.append((folder, name, None))
    return plan


def bench(models, out, backends=("optimum", "genai"), options=None, scenarios=tuple(SCENARIOS), runs=3,
          max_new_tokens=32, baseline=0, torch_precisions=("f32", "bf16"), force=False, log=print):
    """Benchmark model folders x engines with RuntimeOptions `options` (a checkpoint engine: once per torch
    precision) and write OUT/report.{json,md,png}. Returns the report."""
    options = options or RuntimeOptions()
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise OvphiError(f"unknown scenario {unknown[0]}: choose from {', '.join(SCENARIOS)}")
    if runs < 1:
        raise OvphiError("runs must be at least 1")
    plan = plan_variants(models, backends, torch_precisions)
    for folder, _, _ in plan:
        check_model_folder(folder)
    if not 0 <= baseline < len(plan):
        raise OvphiError(f"baseline {baseline} is not a variant index (0 to {len(plan) - 1})")
    check_replaceable(out, REPORT_FILES, force, keep=[folder for folder, _, _ in plan])
    check_same_cpu(out, force)
    pictures = [read_image(path) for path in BENCH_IMAGES]
    machine = roofline.measure_machine()
    log(f"  read bandwidth {machine['read_bandwidth_bytes_per_s']['best'] / 1e9:.1f} GB/s, "
        f"{machine['matmul_precision']} matmul {machine['matmul_flops_per_s']['best'] / 1e9:.0f} GFLOP/s")
    variants = []
    for folder, backend, precision in plan:
        variant_options = replace(options, precision=precision) if precision else options
        variants.append(bench_variant(folder, backend, variant_options, scenarios, runs, max_new_tokens, pictures, machine,
                                      log))
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
