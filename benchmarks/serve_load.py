"""Load on `ovphi serve`: N concurrent clients, each a conversation of M turns about its own picture, through the
official openai client, for each client count and backend in one run. Reports per run the aggregate generated
tokens per second, p50/p95 TTFT and TPOT and the median vision time per turn, refused requests, answered requests per minute and the
server's peak RSS (its worker processes included), as JSON and Markdown.

    python benchmarks/serve_load.py models/full-int4 --backend optimum --backend genai-batch --backend genai-stock \\
        --clients 1 --clients 2 --clients 4 --turns 3 --max-tokens 64 --out benchmarks/reports/serve-load-amd-epyc

Each run gets its own server process on a free loopback port (started and warmed up here, stopped at its end).
"""
import argparse
import base64
import concurrent.futures
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import openai
import requests

from ovphi.calibration.sources import BUILTIN
from ovphi.cpu import cpu_kind, cpu_model
from ovphi.files import write_report
from ovphi.images import read_image
from ovphi.resources import status_bytes

QUESTIONS = ["Describe the image in detail.", "Which colours stand out?", "Say it in one sentence."]


def start_server(model_dir, backend):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "ovphi", "serve", str(model_dir), "--backend", backend,
                                "--port", str(port), "--max-queue", "64"], stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the {backend} server stopped while loading")
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"the {backend} server did not get ready")


def peak_rss_bytes(pid):
    """VmHWM of a process and of its children, those of every thread (the genai-batch worker is started from
    one): an upper bound, since their peaks need not have come at once."""
    children = [child for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()]
    return sum(status_bytes(process, "VmHWM") or 0 for process in [pid, *children])


def data_url(path, tag):
    """The picture as a data: URL, one pixel set from `tag` so that no two clients share a prefix."""
    image = read_image(path)
    image.putpixel((0, 0), (tag % 256, 17, 99))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Turn(NamedTuple):
    """What one client measured of one turn; a refused turn has only its error."""

    ttft: float | None = None
    tpot: float | None = None
    cached_tokens: int | None = None  # None: refused, or the engine does not say
    error: str | None = None
    generated_tokens: int = 0
    vision_s: float | None = None


def conversation(client, model, image_url, turns, max_tokens):
    """[Turn] of each turn of one client's conversation, streamed; a refused
    turn ends the conversation (its error kept, the turns after it not asked). TTFT is what this
    client waited, queueing included: the arrival of the last chunk less the server's time from the first
    token to the end (its `timings`); counting text chunks would not do, since a token may bring no text
    (the random-weight model's tokens mostly do not) and a chunk may bring several tokens."""
    history, measured = [], []
    for number, question in enumerate(QUESTIONS[:turns]):
        content = ([{"type": "image_url", "image_url": {"url": image_url}}] if number == 0 else []) + [
            {"type": "text", "text": question}]
        history.append({"role": "user", "content": content})
        started, text, usage, timings = time.perf_counter(), [], None, None
        try:
            for chunk in client.chat.completions.create(model=model, messages=history, max_tokens=max_tokens,
                                                        temperature=0, stream=True, extra_body={"ignore_eos": True},
                                                        stream_options={"include_usage": True}):
                usage = chunk.usage or usage
                timings = getattr(chunk, "timings", None) or timings
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
        except openai.APIStatusError as error:
            message = error.body.get("message") if isinstance(error.body, dict) else str(error)
            return measured + [Turn(error=f"{error.status_code}: {message}")] * (turns - number)
        ended = time.perf_counter() - started
        history.append({"role": "assistant", "content": "".join(text)})
        ttft = ended - (timings["total_ms"] - timings["ttft_ms"]) / 1000
        tpot = None if timings["tpot_ms"] is None else timings["tpot_ms"] / 1000
        vision = None if timings.get("vision_ms") is None else timings["vision_ms"] / 1000
        cached = usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens  # None: not said
        measured.append(Turn(ttft, tpot, cached, None, usage.completion_tokens, vision))
    return measured


def percentile(values, fraction):
    values = sorted(v for v in values if v is not None)
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))] if values else None


def run(model_dir, backend, clients, turns, max_tokens, pictures):
    process, base = start_server(model_dir, backend)
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=3600)
        model = client.models.list().data[0].id
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda n: conversation(client, model, data_url(pictures[n % len(pictures)], n),
                                                           turns, max_tokens), range(clients)))
        seconds = time.perf_counter() - started
        peak_rss = peak_rss_bytes(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
    per_turn = []
    for number, turn in enumerate(zip(*results)):  # each client's measure of this turn
        measured = lambda field: [getattr(one, field) for one in turn if getattr(one, field) is not None]  # noqa: E731
        median = lambda values: statistics.median(values) if values else None  # noqa: E731
        errors = measured("error")
        per_turn.append({"turn": number + 1, "ttft_p50_s": percentile(measured("ttft"), 0.5),
                         "ttft_p95_s": percentile(measured("ttft"), 0.95),
                         "tpot_p50_s": percentile(measured("tpot"), 0.5), "tpot_p95_s": percentile(measured("tpot"), 0.95),
                         "cached_tokens_median": median(measured("cached_tokens")),
                         "vision_s_median": median(measured("vision_s")),
                         "failed": len(errors), "first_error": errors[0] if errors else None})
    answered = sum(1 for result in results for turn in result if turn.error is None)
    return {"backend": backend, "clients": clients, "turns": turns, "requests": clients * turns, "seconds": seconds,
            "requests_per_minute": answered / seconds * 60, "refused": clients * turns - answered,
            "generated_tokens_per_s": sum(turn.generated_tokens for result in results for turn in result) / seconds,
            "peak_rss_bytes": peak_rss, "per_turn": per_turn}


def later_turn_ttft(result, key):
    """The worst of the turns after the first (None when none was answered)."""
    values = [turn[key] for turn in result["per_turn"][1:] if turn[key] is not None]
    return max(values) if values else None


def summary_rows(report):
    """One row per backend and client count, against the same backend's lone client (the issue's goals: 4 clients
    >= 2.5x one client's tokens/s, nothing refused, later-turn TTFT p95 <= 3x a lone client's later turn)."""
    lone = {r["backend"]: r for r in report["results"] if r["clients"] == 1}
    fmt = lambda value, digits=2: "–" if value is None else f"{value:.{digits}f}"  # noqa: E731
    rows = []
    for result in report["results"]:
        alone = lone.get(result["backend"])
        speedup = result["generated_tokens_per_s"] / alone["generated_tokens_per_s"] if alone else None
        later, alone_later = later_turn_ttft(result, "ttft_p95_s"), alone and later_turn_ttft(alone, "ttft_p50_s")
        first = result["per_turn"][0]
        rows.append(f"| {result['backend']} | {result['clients']} | {result['generated_tokens_per_s']:.2f} | "
                    f"{fmt(speedup)} | {fmt(first['ttft_p50_s'])} / {fmt(first['ttft_p95_s'])} | {fmt(later)} | "
                    f"{fmt(later / alone_later if later and alone_later else None)} | {result['refused']} | "
                    f"{fmt(result['peak_rss_bytes'] and result['peak_rss_bytes'] / 1e9)} |")
    return rows


def markdown(report):
    counts = ", ".join(str(count) for count in report["clients"])
    lines = [f"# ovphi serve under load — {report['machine']['cpu']} ({report['machine']['cpu_kind']})", "",
             f"{counts} concurrent clients x {report['turns']} turns each, streamed answers of "
             f"{report['max_tokens']} tokens (ignore_eos), greedy; each client its own picture. Model: `{report['model']}`.",
             *(["", f"Conditions: {report['conditions']}"] if report.get("conditions") else []),
             *(["", f"Corrected after the run: {report['corrections']}"] if report.get("corrections") else []), "",
             "Generated tok/s: every client's answer tokens over the run's wall time. Later turns: the worst turn after"
             " the first; x lone later turn: that p95 over the same backend's lone client's (its worst later turn's"
             " p50). Refused: requests not answered. Peak RSS: the server and its worker processes.", "",
             "| backend | clients | generated tok/s | x one client | turn 1 TTFT p50 / p95 s | later turns TTFT p95 s |"
             " x lone later turn | refused | peak RSS GB |", "|---|---|---|---|---|---|---|---|---|",
             *summary_rows(report), "", "Every turn:", "",
             "| backend | clients | turn | TTFT p50 s | TTFT p95 s | TPOT p50 ms | TPOT p95 ms | cached tokens (median) |"
             " vision s (median) | failed | answered requests/min |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda value, scale=1, digits=2: "–" if value is None else f"{value * scale:.{digits}f}"  # noqa: E731
    for result in report["results"]:
        for turn in result["per_turn"]:
            lines.append(f"| {result['backend']} | {result['clients']} | {turn['turn']} | {fmt(turn['ttft_p50_s'])} | "
                         f"{fmt(turn['ttft_p95_s'])}"
                         f" | {fmt(turn['tpot_p50_s'], 1000, 0)} | {fmt(turn['tpot_p95_s'], 1000, 0)} | "
                         f"{fmt(turn['cached_tokens_median'], 1, 0)} | {fmt(turn.get('vision_s_median'))} | {turn['failed']} | {result['requests_per_minute']:.2f} |")
    errors = sorted({f"{r['backend']}: {t['first_error']}" for r in report["results"] for t in r["per_turn"] if t["first_error"]})
    return "\n".join(lines + ([""] + [f"- {error}" for error in errors] if errors else [])) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--backend", action="append", help="repeat (default: optimum and genai-stock)")
    parser.add_argument("--clients", type=int, action="append", help="repeat (default: 1, 2 and 4)")
    parser.add_argument("--turns", type=int, default=3, choices=range(1, len(QUESTIONS) + 1))
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--out", required=True)
    parser.add_argument("--conditions", help="what else the machine was doing, said in the report")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pictures = [BUILTIN.parent / json.loads(line)["image"] for line in BUILTIN.read_text().splitlines()]
    clients = args.clients or [1, 2, 4]
    results = [run(args.model_dir, backend, count, args.turns, args.max_tokens, pictures)
               for backend in args.backend or ["optimum", "genai-batch", "genai-stock"] for count in clients]
    report = {"machine": {"cpu": cpu_model(), "cpu_kind": cpu_kind(), "cores": os.cpu_count()},
              "model": str(args.model_dir), "clients": clients, "turns": args.turns,
              "max_tokens": args.max_tokens, "date": time.strftime("%Y-%m-%d %H:%M"), "conditions": args.conditions,
              "results": results}
    write_report(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
