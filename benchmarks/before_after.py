"""Before and after a change, in one run: `ovphi bench` of one model for each backend and each of two git revisions,
the revisions alternating (before first for the first backend, after first for the next, and so on), then one table
of TTFT and TPOT per backend and scenario with the after/before ratio, every turn of the multi-turn scenarios, and
load and memory.

    python benchmarks/before_after.py models/full-int4 --before 0298c92 --backend optimum --backend genai \\
        --scenario image_nc4 --scenario second_turn --runs 2 --out benchmarks/reports/before-after-amd-epyc

Each revision runs from its own temporary git worktree (`python -m ovphi` with that tree first on PYTHONPATH), so
both use this environment's packages. OUT/report.json holds every bench report, by backend and revision.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ovphi.files import write_report

REPOSITORY = Path(__file__).resolve().parents[1]


def worktree(revision, folder):
    """A detached checkout of `revision` in `folder`; its commit's short hash."""
    subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(folder), revision], check=True,
                   capture_output=True)
    return subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def bench(tree, model, backend, arguments, out):
    """The report of one `ovphi bench` run from the source tree `tree`."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-m", "ovphi", "bench", str(model), "--backend", backend, "--out", str(out),
                    "--force", *arguments], check=True, env=environment, cwd=tree)
    return json.loads((out / "report.json").read_text())


def cell(stats, key, scale=1.0, digits=3):
    if not stats or not stats.get(key):
        return "–"
    value = stats[key]
    return f"{value['median'] * scale:.{digits}f} ({value['min'] * scale:.{digits}f}–{value['max'] * scale:.{digits}f})"


def ratio(after, before, key):
    if not (after and before and after.get(key) and before.get(key) and before[key]["median"]):
        return "–"
    return f"{after[key]['median'] / before[key]['median']:.2f}"


def turn_cell(turn):
    """A turn's median TTFT, with the tokens it computed where the engine says."""
    if not turn:
        return "–"
    computed = f" ({turn['processed_tokens']['median']:.0f})" if turn["processed_tokens"] else ""
    return f"{turn['ttft_s']['median']:.3f}{computed}"


def markdown(revisions, reports):
    """The comparison as Markdown: reports[backend][revision] are `ovphi bench` reports."""
    before, after = revisions
    first = next(iter(next(iter(reports.values())).values()))
    lines = [f"# Before / after — {first['machine']['cpu']}, {first['machine']['cores']} cores", "",
             f"`{before}` (before) against `{after}` (after), one `ovphi bench` each per backend in one run; "
             f"{first['runs']} runs after a warm-up, {first['max_new_tokens']} new tokens, medians (min–max). "
             "Ratio: after / before (below 1: faster after).", "",
             "| backend | scenario | TTFT s before | TTFT s after | TTFT ratio | TPOT ms before | TPOT ms after | "
             "TPOT ratio |", "|---|---|---|---|---|---|---|---|"]
    for backend, by_revision in reports.items():
        old, new = (by_revision[revision]["variants"][0]["scenarios"] for revision in revisions)
        for scenario in new:
            b, a = old.get(scenario), new[scenario]
            lines.append(f"| {backend} | {scenario} | {cell(b, 'ttft_s')} | {cell(a, 'ttft_s')} | "
                         f"{ratio(a, b, 'ttft_s')} | {cell(b, 'tpot_s', 1000, 1)} | {cell(a, 'tpot_s', 1000, 1)} | "
                         f"{ratio(a, b, 'tpot_s')} |")
    lines += ["", "Every turn of the multi-turn scenarios (TTFT s, medians; tokens computed this turn in brackets).", "",
              "| backend | scenario | turn | before | after | ratio |", "|---|---|---|---|---|---|"]
    for backend, by_revision in reports.items():
        old, new = (by_revision[revision]["variants"][0]["scenarios"] for revision in revisions)
        for scenario, stats in new.items():
            for number, turn in enumerate((stats or {}).get("turns", []), 1):
                was = ((old.get(scenario) or {}).get("turns") or [None] * number)[number - 1]
                lines.append(f"| {backend} | {scenario} | {number} | {turn_cell(was)} | {turn_cell(turn)} | "
                             f"{ratio(turn, was, 'ttft_s')} |")
    lines += ["", "| backend | revision | load cold s | load cached s | start to loaded s | peak RSS GB |",
              "|---|---|---|---|---|---|"]
    for backend, by_revision in reports.items():
        for revision in revisions:
            variant = by_revision[revision]["variants"][0]
            cached = "–" if variant["load_cached_s"] is None else f"{variant['load_cached_s']:.2f}"
            lines.append(f"| {backend} | {revision} | {variant['load_cold_s']:.2f} | {cached} | {variant['ready_s']:.2f}"
                         f" | {variant['peak_rss_bytes'] / 1e9:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the IR folder both revisions bench")
    parser.add_argument("--before", required=True, help="git revision before the change")
    parser.add_argument("--after", default="HEAD", help="git revision after it (default HEAD)")
    parser.add_argument("--backend", action="append", required=True, help="repeat: each is benched by both revisions")
    parser.add_argument("--out", required=True, help="report folder")
    args, bench_arguments = parser.parse_known_args()
    out = Path(args.out)
    model = Path(args.model).resolve()
    reports = {}
    with tempfile.TemporaryDirectory() as scratch:
        trees = {}
        for role, revision in (("before", args.before), ("after", args.after)):
            tree = Path(scratch) / role
            trees[worktree(revision, tree)] = tree
        revisions = list(trees)
        try:
            for index, backend in enumerate(args.backend):
                reports[backend] = dict.fromkeys(revisions)  # before, after, whichever runs first
                for revision in revisions if index % 2 == 0 else revisions[::-1]:
                    reports[backend][revision] = bench(trees[revision], model, backend, bench_arguments,
                                                       Path(scratch) / f"{revision}-{backend}")
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(tree)],
                               check=False, capture_output=True)
    write_report(out, reports, markdown(revisions, reports))
    print(out / "report.md")


if __name__ == "__main__":
    main()
