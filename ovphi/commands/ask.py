"""`ovphi ask MODEL_DIR --image IMG --task caption|ocr|vqa|summary`: one answer, streamed or as JSON."""
import argparse
import json
import sys
from dataclasses import replace

from ..errors import OvphiError
from ..files import check_output_file, write_atomically
from ..images import MAX_IMAGES, read_frames, read_image
from ..resources import peak_rss_bytes, rss_bytes, seconds_since_start
from ..runtime import ChatSession, Chunk, load
from .options import HelpFormatter, add_generation_options, add_model_options, generation_config, runtime_options
from .status import StatusLine, loaded

TASK_PROMPTS = {
    "caption": "Write a one-sentence caption for this image.",
    "ocr": "Read all the text in this image, line by line, exactly as written.",
    "summary": "These are frames of a video, in order. Summarise what happens.",
}
FRAME_CROPS = 4  # the model card's advice for several images or video frames


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi ask", description=__doc__,
                                     formatter_class=HelpFormatter)
    add_model_options(parser)
    parser.add_argument("--image", action="append", default=[], help="path or http(s) URL; repeat for several")
    parser.add_argument("--frames", help="a folder of frames or an animated GIF (summarised at num_crops 4)")
    parser.add_argument("--max-frames", type=int, default=8)
    parser.add_argument("--task", choices=["caption", "ocr", "vqa", "summary"],
                        help="built-in prompt (default: caption, or summary with --frames)")
    parser.add_argument("--prompt", help="the question (required for vqa; replaces the built-in prompt); - reads"
                                         " it from standard input")
    parser.add_argument("--prompt-file", help="read the question from this UTF-8 file")
    parser.add_argument("--format", choices=["txt", "json"], default="txt")
    parser.add_argument("--output", help="write the answer (txt or json) to this file")
    parser.add_argument("--logprobs", type=int, metavar="N",
                        help="with --format json: each token's log probability and the N most likely at its place")
    add_generation_options(parser)
    # one question: no later conversation can start from a snapshot of its image prefix (0.6 GB at full size)
    parser.set_defaults(prefix_cache_mb=0)
    return parser


def read_prompt(args):
    """The question from --prompt, --prompt - (stdin) or --prompt-file; None for the task's own."""
    if args.prompt_file and args.prompt is not None:
        raise OvphiError("give --prompt or --prompt-file, not both")
    try:
        if args.prompt_file:
            with open(args.prompt_file, encoding="utf-8") as file:
                return file.read()
        if args.prompt == "-":
            return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise OvphiError("the prompt is not UTF-8 text") from None
    except OSError as error:
        raise OvphiError(f"cannot read the prompt file {args.prompt_file} ({error.strerror})") from None
    return args.prompt


def token_json(token):
    """A TokenLogprob as JSON: its id, text and log probability, and the tokens most likely at its place."""
    entry = {"id": token.token_id, "token": token.text, "logprob": token.logprob}
    return entry | ({"top": [token_json(other) for other in token.top]} if token.top else {})


def main(args):
    task = args.task or ("summary" if args.frames else "caption")
    prompt = read_prompt(args)
    if task == "vqa" and not prompt:
        raise OvphiError("--task vqa needs --prompt with the question")
    if prompt is not None and not prompt.strip():
        raise OvphiError("the prompt is empty")
    if args.logprobs is not None and args.format != "json":
        raise OvphiError("--logprobs needs --format json")
    generation = replace(generation_config(args), logprobs=args.logprobs)
    options = runtime_options(args)
    if args.output:
        check_output_file(args.output)
    images = [read_image(source) for source in args.image]
    if args.frames:
        images += read_frames(args.frames, args.max_frames)
        generation = replace(generation, num_crops=generation.num_crops or FRAME_CROPS)
    if not images:
        raise OvphiError("give at least one --image or --frames")
    if len(images) > MAX_IMAGES:
        raise OvphiError(f"{len(images)} images; one question takes at most {MAX_IMAGES}")
    engine = loaded(load(args.model_dir, args.backend, options), "ovphi ask")
    ready_s = seconds_since_start()
    stream_to_terminal = args.format == "txt" and not args.output
    status = StatusLine() if stream_to_terminal else None
    tokens = []
    try:
        for event in ChatSession(engine, generation).ask(prompt or TASK_PROMPTS[task], images):
            if isinstance(event, Chunk):
                tokens += [token_json(token) for token in event.logprobs]
            if stream_to_terminal:
                status.show(event)
                if isinstance(event, Chunk):
                    print(event.text, end="", flush=True)
    finally:
        if status:
            status.close()
    result = event
    if args.format == "txt":
        text = result.answer + "\n"
    else:
        text = json.dumps({"answer": result.answer, "finish_reason": result.finish_reason, "task": task,
                           "model": str(args.model_dir), "device": engine.device, "backend": engine.name,
                           "images": args.image, "frames": args.frames, "timings": result.timings.as_dict(),
                           "ready_s": ready_s, "peak_rss_bytes": peak_rss_bytes(engine.worker_pids()),
                           "rss_anon_bytes": rss_bytes("RssAnon", engine.worker_pids()),
                           "rss_file_bytes": rss_bytes("RssFile", engine.worker_pids())}
                          | ({"logprobs": tokens} if args.logprobs is not None else {}), indent=2) + "\n"
    if args.output:
        write_atomically(args.output, text)
    elif stream_to_terminal:
        print()
    else:
        sys.stdout.write(text)
