"""Process start to a loaded engine (issue 27 goal 3) from a cold page cache, with and without reading the
weights ahead (Engine.__init__ calls resources.read_ahead on the IR's .bin files and the compiled blobs it will
use), beside a warm page cache; in fresh processes, the three alternating for --rounds rounds, per engine.
Cold: the folder's files are first dropped from the page cache (bench.memory_limit.evict_from_page_cache).
"Not read ahead" replaces read_ahead in that child process only.

    python benchmarks/cold_start.py models/full-int4 --out benchmarks/reports/cold-start-amd-epyc
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = ("import os, sys\nimport ovphi.runtime.engine as engine\nfrom ovphi.resources import seconds_since_start\n"
         "from ovphi.runtime import load\nif sys.argv[3] == 'off':\n    engine.read_ahead = lambda paths: None\n"
         "load(sys.argv[1], sys.argv[2])\nprint(seconds_since_start(), flush=True)\nos._exit(0)")
MODES = {"cold, read ahead": (True, "on"), "cold, not read ahead": (True, "off"), "warm page cache": (False, "on")}


def start_to_loaded(model_dir, backend, cold, read_ahead):
    from ovphi.bench.memory_limit import evict_from_page_cache

    if cold:
        evict_from_page_cache(model_dir)
    child = subprocess.run([sys.executable, "-c", CHILD, model_dir, backend, read_ahead], capture_output=True,
                           text=True, cwd=Path(__file__).parent.parent)
    if child.returncode:
        sys.exit(f"cold_start: the {backend} load failed: {child.stderr.strip().splitlines()[-1:]}")
    return float(child.stdout)


def markdown(report):
    lines = [f"# Process start to a loaded engine, cold and warm page cache: {report['model_dir']}", "",
             f"{report['cpu']} ({report['cpu_kind']}), {report['memory_available_gb']:.1f} GB available, OpenVINO "
             f"{report['openvino']}, ovphi {report['commit']}, {report['date']}; fresh processes, the modes alternating, "
             f"{report['rounds']} rounds. `python benchmarks/cold_start.py {report['model_dir']} --out ...`", "",
             "| engine | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
    for backend, modes in report["seconds"].items():
        cells = [f"{statistics.median(runs):.2f} s ({', '.join(f'{run:.2f}' for run in runs)})" for runs in modes.values()]
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    lines += ["", "Median (each run). Cold: the folder's files dropped from the page cache before the process starts.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--backend", action="append", choices=["optimum", "genai"], help="repeat; default: both")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", help="report folder (one per CPU kind); without it, only printed")
    args = parser.parse_args()
    import openvino as ov

    from ovphi.cpu import cpu_kind, cpu_model
    from ovphi.files import write_report
    from ovphi.resources import available_memory_bytes

    seconds = {backend: {mode: [] for mode in MODES} for backend in args.backend or ["optimum", "genai"]}
    for backend, modes in seconds.items():
        for _ in range(args.rounds):
            for mode, (cold, read_ahead) in MODES.items():
                modes[mode].append(start_to_loaded(args.model_dir, backend, cold, read_ahead))
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    report = {"model_dir": args.model_dir, "commit": commit, "cpu": cpu_model(), "cpu_kind": cpu_kind(),
              "openvino": ov.get_version(), "memory_available_gb": available_memory_bytes() / 1e9,
              "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds, "seconds": seconds}
    if args.out:
        write_report(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
