"""`ovphi ask MODEL_DIR --image IMG --task caption|ocr|vqa`: one answer, streamed as text or returned as JSON."""
import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import OvphiError
from . import load, read_image, user_message

TASK_PROMPTS = {
    "caption": "Write a one-sentence caption for this image.",
    "ocr": "Read all the text in this image, line by line, exactly as written.",
}


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi ask", description=__doc__)
    parser.add_argument("model_dir", help="phi3_v OpenVINO IR folder (from `ovphi convert`)")
    parser.add_argument("--image", action="append", default=[], help="path or http(s) URL; repeat for several")
    parser.add_argument("--task", choices=["caption", "ocr", "vqa"], default="caption")
    parser.add_argument("--prompt", help="the question (required for vqa; replaces the built-in prompt)")
    parser.add_argument("--format", choices=["txt", "json"], default="txt")
    parser.add_argument("--output", help="write the answer (txt or json) to this file")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, GPU.N or AUTO")
    parser.add_argument("--backend", default="optimum", choices=["optimum"])
    parser.add_argument("--num-crops", type=int, help="HD crops per image (default: the model's, 4)")
    parser.add_argument("--precision", help="INFERENCE_PRECISION_HINT, e.g. f32 or bf16")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--do-sample", action="store_true")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--repetition-penalty", type=float)
    parser.add_argument("--seed", type=int)
    return parser


def generation_options(args):
    options = {"max_new_tokens": args.max_new_tokens, "do_sample": args.do_sample}
    for name in ("temperature", "top_p", "top_k", "repetition_penalty"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def write_atomically(path, text):
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def main(args):
    if args.task == "vqa" and not args.prompt:
        raise OvphiError("--task vqa needs --prompt with the question")
    if args.prompt is not None and not args.prompt.strip():
        raise OvphiError("--prompt is empty")
    if not args.image:
        raise OvphiError("give at least one --image")
    images = [read_image(source) for source in args.image]
    if args.seed is not None:
        import torch

        torch.manual_seed(args.seed)
    vlm = load(args.model_dir, device=args.device, backend=args.backend, precision=args.precision)
    messages = [user_message(args.prompt or TASK_PROMPTS[args.task], len(images))]
    pieces = []
    for piece in vlm.stream(messages, images, num_crops=args.num_crops, **generation_options(args)):
        pieces.append(piece)
        if args.format == "txt" and not args.output:
            print(piece, end="", flush=True)
    answer = "".join(pieces).strip()
    if args.format == "txt":
        text = answer + "\n"
        if not args.output:
            print()
    else:
        text = json.dumps({"answer": answer, "task": args.task, "model": str(args.model_dir),
                           "device": vlm.device, "backend": vlm.backend, "images": args.image,
                           "timings": vlm.last_timings}, indent=2) + "\n"
        if not args.output:
            sys.stdout.write(text)
    if args.output:
        write_atomically(args.output, text)
