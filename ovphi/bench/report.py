"""The bench report as Markdown tables and a PNG plot."""
from pathlib import Path


def label(index, variant):
    return f"{index} {Path(variant['ir_dir']).name}"


def gigabytes(count):
    return "–" if count is None else f"{count / 1e9:.2f}"


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
            if stats is None or "failed" in stats:
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
    turn_rows = [(index, variant, scenario, number, turn) for index, variant in enumerate(report["variants"])
                 for scenario, stats in variant["scenarios"].items() if stats and "turns" in stats
                 for number, turn in enumerate(stats["turns"], 1)]
    if turn_rows:
        lines += ["", "Every turn of the multi-turn scenarios (medians): the prompt so far, and the tokens computed this"
                  " turn (the rest came from the KV cache).", "",
                  "| variant | backend | scenario | turn | TTFT s | prompt tok | processed tok | answer tok |",
                  "|---|---|---|---|---|---|---|---|"]
        for index, variant, scenario, number, turn in turn_rows:
            computed = f"{turn['processed_tokens']['median']:.0f}" if turn["processed_tokens"] else "unknown"
            lines.append(f"| {label(index, variant)} | {variant['backend']} | {scenario} | {number} | "
                         f"{turn['ttft_s']['median']:.3f} | {turn['prompt_tokens']['median']:.0f} | {computed} | "
                         f"{turn['answer_tokens']['median']:.0f} |")
    lines += ["", "`repeat_image`: a new conversation about the previous picture (its prefix cache use per run);"
              " `ask_cold`: a fresh `ovphi ask` process, TTFT counted from the process's start, the folder's files"
              " first dropped from the page cache; `ask_4gb`: the same inside a 4 GiB memory cgroup."]
    lines += memory_limit_rows(report)
    lines += ["", "Load: in the bench process, without and with the compiled-model cache. Start to loaded: a fresh"
              " `ovphi ask` process (interpreter, imports, load), which also gives the peak RSS of one image turn"
              " and, at its end, the anonymous RSS (heap, repacked weights, KV cache) and the RSS that maps files"
              " (weights read through mmap: page cache the kernel can reclaim)."
              " First request: the variant's first turn after load (the CPU plugin repacks the weights on the"
              " first inference), then after a fresh load and `warm_up()`, beside the same scenario's median.",
              "", "| variant | backend | load cold s | load cached s | start to loaded s | first request TTFT s | "
              "warm-up s | first request after warm-up s | steady TTFT s | peak RSS GB | at the end: anonymous /"
              " file-mapped GB | LM weights GB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for index, variant in enumerate(report["variants"]):
        cached = f"{variant['load_cached_s']:.2f}" if variant["load_cached_s"] is not None else "–"
        first = variant["first_request"]
        first_cells = "– | – | – | –"
        if first and first.get("steady_ttft_s"):
            warm = (f"{first['warm_up_s']:.2f} | {first['ttft_after_warm_up_s']:.3f}" if "warm_up_s" in first
                    else "– | –")
            first_cells = f"{first['ttft_s']:.3f} ({first['scenario']}) | {warm} | {first['steady_ttft_s']:.3f}"
        lines.append(f"| {label(index, variant)} | {variant['backend']} | {variant['load_cold_s']:.2f} | {cached} | "
                     f"{variant['ready_s']:.2f} | {first_cells} | {variant['peak_rss_bytes'] / 1e9:.2f} | "
                     f"{gigabytes(variant.get('rss_anon_bytes'))} / {gigabytes(variant['rss_file_bytes'])} | "
                     f"{gigabytes(variant['language_weight_bytes'])} |")
    limits = report["roofline_machine"]
    bandwidth, rate = limits["read_bandwidth_bytes_per_s"], limits["matmul_flops_per_s"]
    lines += ["", f"Machine limits (best / median): read bandwidth {bandwidth['best'] / 1e9:.1f} / "
              f"{bandwidth['median'] / 1e9:.1f} GB/s, {limits['matmul_precision']} matmul {rate['best'] / 1e9:.0f} / "
              f"{rate['median'] / 1e9:.0f} GFLOP/s; other processes used {limits['other_processes_cpu_percent']:.0f} %"
              " of the CPU when they were measured."]
    return "\n".join(lines) + "\n"


def memory_limit_rows(report):
    """The scenarios run under a memory limit, beside the same variant's `ask_cold` (the same run without it)."""
    rows = [(index, variant, name, stats) for index, variant in enumerate(report["variants"])
            for name, stats in variant["scenarios"].items() if stats and ("failed" in stats or "memory_limit" in stats)]
    if not rows:
        return []
    lines = ["", "Under a memory limit (a memory cgroup, charged for the weights it reads as well), beside the same"
             " variant's `ask_cold` in this run. Limit hits: how often usage reached the limit and the kernel had to"
             " reclaim (paging mapped weights out, to read them again).", "",
             "| variant | backend | scenario | result | TTFT s (x ask_cold) | TPOT ms (x ask_cold) | peak usage GB |"
             " limit hits |", "|---|---|---|---|---|---|---|---|"]
    for index, variant, name, stats in rows:
        row = f"| {label(index, variant)} | {variant['backend']} | {name} |"
        if "failed" in stats:
            lines.append(f"{row} {stats['failed']} | – | – | – | – |")
            continue
        cold = variant["scenarios"].get("ask_cold")
        readings = stats["memory_limit"][-1]
        lines.append(f"{row} answered under {readings['limit_bytes'] / 2**30:g} GiB | "
                     f"{against(stats, cold, 'ttft_s', 1, 3)} | {against(stats, cold, 'tpot_s', 1000, 0)} | "
                     f"{gigabytes(readings['max_usage_bytes'])} | {readings['limit_hits']} |")
    return lines


def against(stats, base, metric, scale, digits):
    """A metric's median (times `scale`) and, when `base` measured it, their ratio."""
    text = f"{stats[metric]['median'] * scale:.{digits}f}"
    return text + (f" ({stats[metric]['median'] / base[metric]['median']:.2f}x)" if base and "failed" not in base else "")


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

