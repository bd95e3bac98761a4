"""Where one image turn's memory goes (issue 27 goal 1): the resident memory of a fresh process, anonymous and
file-mapped, step by step, for each engine in a process of its own:
  - the interpreter with ovphi imported;
  - the engine's own imports (torch, transformers and optimum-intel; openvino_genai);
  - the model loaded (compiled, from the compiled-model cache once it is filled);
  - one image turn (4 crops, 32 new tokens), split by its timings into vision encode, prefill and decode: the
    readings at the end of each and the largest within it (sampled every 20 ms);
  - the IR's weight files and compiled blobs unmapped (MADV_DONTNEED: they stay in the page cache);
  - the same question again in a new conversation (reset): what a turn reads back once the first has run.
After loading and after each turn, which files the file-mapped part holds (the IR's `*.bin` weights, the
compiled-model cache's blobs, libraries), from /proc/PID/smaps.

    python benchmarks/memory_breakdown.py models/full-int4 --out benchmarks/reports/memory-breakdown-amd-epyc
"""
import argparse
import importlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

IMPORTS = {"optimum": ["torch", "transformers", "optimum.intel"], "genai": ["openvino_genai"]}
GB = 1e9


class Sampler:
    """(seconds, anonymous bytes, file-mapped bytes) of this process and the engine's workers every 20 ms."""

    def __init__(self):
        from ovphi.resources import rss_bytes

        self.rss_bytes, self.pids, self.samples = rss_bytes, [], []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def reading(self):
        return time.perf_counter(), self.rss_bytes("RssAnon", self.pids), self.rss_bytes("RssFile", self.pids)

    def run(self):
        while not self.done.wait(0.02):
            self.samples.append(self.reading())

    def within(self, start, end):
        """(the last reading, the largest anonymous and file-mapped readings, not necessarily at once) between two
        times."""
        samples = [sample for sample in self.samples if start <= sample[0] <= end] or [self.reading()]
        return samples[-1], (max(sample[1] for sample in samples), max(sample[2] for sample in samples))


def mapped_files(pids=()):
    """{file name: resident GB} of the files of 10 MB or more mapped by this process and `pids`."""
    from ovphi.resources import mapped_file_bytes

    resident = sorted(mapped_file_bytes(pids).items(), key=lambda item: -item[1])
    return {Path(path).name: size / GB for path, size in resident if size >= 10e6}


def step(name, reading, peaks=None):
    """A row: the readings after the step, and the largest within it where sampled."""
    return {"step": name, "anon_gb": reading[1] / GB, "file_gb": reading[2] / GB,
            "peak_anon_gb": peaks and peaks[0] / GB, "peak_file_gb": peaks and peaks[1] / GB}


def turn_steps(sampler, engine, conversation, label):
    """The turn's rows (vision encode, prefill, decode, told apart by its timings) and its TurnTimings."""
    from ovphi.runtime import GenerationConfig

    started = time.perf_counter()
    result = engine.complete(conversation, GenerationConfig(max_new_tokens=32, ignore_eos=True))
    ended, timings = time.perf_counter(), result.timings
    vision_end = started + (timings.vision_s or 0)
    first_token = started + timings.ttft_s
    phases = [(f"{label}: vision encode ({timings.vision_s or 0:.1f} s)", started, vision_end),
              (f"{label}: prefill of {timings.prompt_tokens} tokens (TTFT {timings.ttft_s:.1f} s)", vision_end,
               first_token),
              (f"{label}: decode of {timings.answer_tokens} tokens", first_token, ended)]
    return [step(name, *sampler.within(start, end)) for name, start, end in phases], timings


def measure(model_dir, backend, image):
    """The steps of one engine, in this process (run fresh for each engine)."""
    sampler = Sampler()
    import ovphi.runtime as runtime
    from ovphi.images import read_image
    from ovphi.resources import MADV_DONTNEED, page_out_mapped_files, peak_rss_bytes
    from ovphi.runtime import Conversation, ImagePart

    steps = [step("interpreter and ovphi imported", sampler.reading())]
    for module in IMPORTS[backend]:
        importlib.import_module(module)
    steps.append(step(f"engine imports ({', '.join(IMPORTS[backend])})", sampler.reading()))
    started = time.perf_counter()
    engine = runtime.load(model_dir, backend, prefix_cache_mb=0)
    sampler.pids = engine.worker_pids()
    steps.append(step(f"model loaded ({engine.load_seconds:.1f} s)", sampler.reading(),
                      sampler.within(started, time.perf_counter())[1]))
    mapped = {"model loaded": mapped_files(sampler.pids)}
    question = Conversation()
    question.add("user", ImagePart(read_image(image)), "Describe the image in detail.")
    first, timings = turn_steps(sampler, engine, question, "first turn")
    mapped["first turn"] = mapped_files(sampler.pids)
    engine.reset()
    page_out_mapped_files(engine.mapped_weights(), MADV_DONTNEED)
    first.append(step("the IR's weights and compiled blobs unmapped", sampler.reading()))
    again, _ = turn_steps(sampler, engine, question, "same question, new conversation")
    mapped["same question, new conversation"] = mapped_files(sampler.pids)
    sampler.done.set()
    sampler.thread.join()
    peak = max(sample[1] + sample[2] for sample in sampler.samples)
    peak_rss = peak_rss_bytes(sampler.pids)
    engine.close()
    return {"backend": backend, "steps": steps + first + again, "peak_sampled_gb": peak / GB,
            "peak_rss_gb": peak_rss / GB, "mapped_files_gb": mapped,
            "prompt_tokens": timings.prompt_tokens, "load_s": engine.load_seconds}


def markdown(report):
    lines = [f"# Where one image turn's memory goes: {report['model_dir']}", "",
             f"{report['cpu']} ({report['cpu_kind']}), OpenVINO {report['openvino']}, ovphi {report['commit']}, "
             f"{report['date']}; each engine "
             f"in a fresh process; one image at 4 crops, 32 new tokens; RSS sampled every 20 ms. "
             f"`python benchmarks/memory_breakdown.py {report['model_dir']} --out ...`", ""]
    for engine in report["engines"]:
        lines += [f"## {engine['backend']}: peak RSS {engine['peak_rss_gb']:.2f} GB (VmHWM; largest sampled anonymous + "
                  f"file-mapped {engine['peak_sampled_gb']:.2f} GB)",
                  "", "| step | anonymous after it | file-mapped after it | largest anonymous / file-mapped within it |", "|---|---|---|---|"]
        for row in engine["steps"]:
            within = "" if row["peak_anon_gb"] is None else f"{row['peak_anon_gb']:.2f} / {row['peak_file_gb']:.2f} GB"
            lines.append(f"| {row['step']} | {row['anon_gb']:.2f} GB | {row['file_gb']:.2f} GB | {within} |")
        lines += ["", "Files of 10 MB or more resident in the mappings (GB):", ""]
        lines += [f"- after {when}: " + (", ".join(f"{name} {size:.2f}" for name, size in files.items()) or "none")
                  for when, files in engine["mapped_files_gb"].items()]
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--out", help="report folder (one per CPU kind); without it, only printed")
    parser.add_argument("--backend", action="append", choices=sorted(IMPORTS), help="repeat; default: both")
    parser.add_argument("--image", default=str(Path(__file__).parent.parent / "ovphi/calibration/builtin/bar_chart_0.png"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model_dir, args.backend[0], args.image)))
        return
    engines = []
    for backend in args.backend or sorted(IMPORTS):
        child = subprocess.run([sys.executable, __file__, args.model_dir, "--backend", backend, "--image", args.image,
                                "--child"], capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"memory_breakdown: the {backend} run failed: {child.stderr.strip().splitlines()[-1:]}")
        engines.append(json.loads(child.stdout.strip().splitlines()[-1]))
    import openvino as ov

    from ovphi.cpu import cpu_kind, cpu_model
    from ovphi.files import write_report

    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    report = {"model_dir": args.model_dir, "commit": commit, "cpu": cpu_model(), "cpu_kind": cpu_kind(), "openvino": ov.get_version(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "engines": engines}
    if args.out:
        write_report(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
