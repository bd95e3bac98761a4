"""`ovphi chat MODEL_DIR [--image IMG]`: an interactive, streaming chat about images.

Commands: /image PATH_OR_URL (attach to the next turn), /reset, /save FILE, /help, /quit.
Ctrl-C stops the answer being written (the history keeps what was said); Ctrl-D or /quit leaves.
"""
import argparse
import json
import threading

from ..errors import OvphiError
from ..files import write_atomically
from . import ChatSession, load, read_image
from .options import add_generation_options, add_model_options, generation_options, model_options

HELP = ("/image PATH_OR_URL  attach an image to the next question\n"
        "/reset              start a new conversation\n"
        "/save FILE          write the conversation as JSON\n"
        "/help               this list\n"
        "/quit               leave (or Ctrl-D); Ctrl-C stops an answer")


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi chat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    parser.add_argument("--image", action="append", default=[], help="attach to the first question; repeatable")
    add_generation_options(parser, max_new_tokens=512)
    return parser


def run_command(chat, line):
    """Carry out one /command; returns False when the chat should end."""
    command, _, argument = line.partition(" ")
    argument = argument.strip()
    if command in ("/quit", "/exit"):
        return False
    if command == "/help":
        print(HELP)
    elif command == "/reset":
        chat.reset()
        print("(new conversation)")
    elif command == "/image":
        if not argument:
            raise OvphiError("/image needs a path or URL")
        chat.attach(read_image(argument), argument)
        print(f"(image {len(chat.images) + len(chat.pending)} attached to the next question)")
    elif command == "/save":
        if not argument:
            raise OvphiError("/save needs a file name")
        write_atomically(argument, json.dumps(chat.transcript(), indent=2) + "\n")
        print(f"(conversation saved to {argument})")
    else:
        raise OvphiError(f"unknown command {command}; /help lists them")
    return True


def answer(chat, question):
    """Stream one answer; Ctrl-C ends it early and keeps what was written."""
    pieces = chat.ask(question)
    print("assistant> ", end="", flush=True)
    try:
        for piece in pieces:
            print(piece, end="", flush=True)
        print()
    except KeyboardInterrupt:
        pieces.close()
        print(" [stopped]")


def warm_up_in_background(vlm):
    """Start vlm.warm_up() on a thread, so that the first inference's one-time costs are paid while the
    user types; join the thread before the first turn. A failing warm-up is left for that turn to report."""
    def warm_up():
        try:
            vlm.warm_up()
        except Exception:  # the same error comes back, as one line, from the first turn
            vlm.reset()

    thread = threading.Thread(target=warm_up, daemon=True)
    thread.start()
    return thread


def main(args):
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    chat = ChatSession(load(args.model_dir, **model_options(args)), args.num_crops, **generation_options(args))
    for source in args.image:
        chat.attach(read_image(source), source)
    warming = warm_up_in_background(chat.vlm)
    print(f"ovphi chat: {args.model_dir} on {chat.vlm.device} ({chat.vlm.backend}). /help for commands.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print()
            continue
        warming.join()
        try:
            if line.startswith("/"):
                if not run_command(chat, line):
                    return
            else:
                answer(chat, line)
        except OvphiError as error:
            print(f"error: {error}")
