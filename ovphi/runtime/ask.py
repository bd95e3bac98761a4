"""`ovphi ask MODEL_DIR --image IMG --task caption|ocr|vqa|summary`: one answer, streamed or as JSON."""
import argparse
import json
import sys

from ..errors import OvphiError
from ..files import write_atomically
from ..resources import peak_rss_bytes, rss_file_bytes, seconds_since_start
from . import ChatSession, load, read_image
from .images import read_frames
from .options import add_generation_options, add_model_options, generation_options, model_options

TASK_PROMPTS = {
    "caption": "Write a one-sentence caption for this image.",
    "ocr": "Read all the text in this image, line by line, exactly as written.",
    "summary": "These are frames of a video, in order. Summarise what happens.",
}


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi ask", description=__doc__)
    add_model_options(parser)
    parser.add_argument("--image", action="append", default=[], help="path or http(s) URL; repeat for several")
    parser.add_argument("--frames", help="a folder of frames or an animated GIF (summarised at num_crops 4)")
    parser.add_argument("--max-frames", type=int, default=8)
    parser.add_argument("--task", choices=["caption", "ocr", "vqa", "summary"],
                        help="built-in prompt (default: caption, or summary with --frames)")
    parser.add_argument("--prompt", help="the question (required for vqa; replaces the built-in prompt)")
    parser.add_argument("--format", choices=["txt", "json"], default="txt")
    parser.add_argument("--output", help="write the answer (txt or json) to this file")
    add_generation_options(parser)
    return parser


def main(args):
    task = args.task or ("summary" if args.frames else "caption")
    if task == "vqa" and not args.prompt:
        raise OvphiError("--task vqa needs --prompt with the question")
    if args.prompt is not None and not args.prompt.strip():
        raise OvphiError("--prompt is empty")
    images = [read_image(source) for source in args.image]
    num_crops = args.num_crops
    if args.frames:
        images += read_frames(args.frames, args.max_frames)
        num_crops = num_crops or 4
    if not images:
        raise OvphiError("give at least one --image or --frames")
    vlm = load(args.model_dir, **model_options(args))
    ready_s = seconds_since_start()
    chat = ChatSession(vlm, num_crops, **generation_options(args))
    stream_to_terminal = args.format == "txt" and not args.output
    pieces = []
    for piece in chat.ask(args.prompt or TASK_PROMPTS[task], images):
        pieces.append(piece)
        if stream_to_terminal:
            print(piece, end="", flush=True)
    answer = "".join(pieces).strip()
    if args.format == "txt":
        text = answer + "\n"
    else:
        text = json.dumps({"answer": answer, "task": task, "model": str(args.model_dir), "device": vlm.device,
                           "backend": vlm.backend, "images": args.image, "frames": args.frames,
                           "timings": chat.last_timings.as_dict(), "ready_s": ready_s,
                           "peak_rss_bytes": peak_rss_bytes(), "rss_file_bytes": rss_file_bytes()},
                          indent=2) + "\n"
    if args.output:
        write_atomically(args.output, text)
    elif stream_to_terminal:
        print()
    else:
        sys.stdout.write(text)
