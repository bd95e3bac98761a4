"""`ovphi chat MODEL_DIR [--image IMG]`: an interactive, streaming chat about images.

Commands: /image PATH_OR_URL (attach to the next question), /reset, /save FILE, /schema FILE|off, /help, /quit.
A line of three double quotes starts and ends a question of several lines. Ctrl-C stops the answer being
written (the history keeps what was said); Ctrl-C twice at an empty prompt, Ctrl-D or /quit leaves.
An error never ends the chat: it is one line, and the conversation goes on.
"""
import argparse
import json
import os
import select
import sys
import threading
from dataclasses import replace
from pathlib import Path

from ..errors import OvphiError
from ..files import write_atomically
from ..images import MAX_IMAGES, read_image
from ..runtime import ChatSession, Chunk, load
from .options import (
    HelpFormatter,
    add_generation_options,
    add_model_options,
    generation_config,
    runtime_options,
    schema_file_grammar,
)
from .status import StatusLine, loaded

HELP = ("/image PATH_OR_URL  attach an image to the next question\n"
        "/reset              start a new conversation\n"
        "/save FILE          write the conversation as JSON\n"
        "/schema FILE        answer in JSON valid against the schema in FILE (/schema off: free text)\n"
        '"""                 start (and end) a question of several lines\n'
        "/help               this list\n"
        "/quit               leave (or Ctrl-D); Ctrl-C stops an answer")
BLOCK = '"""'


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi chat", description=__doc__,
                                     formatter_class=HelpFormatter)
    add_model_options(parser)
    parser.add_argument("--image", action="append", default=[], help="attach to the first question; repeatable")
    parser.add_argument("--history-file", help="line history kept across sessions (default: "
                                               "$XDG_STATE_HOME/ovphi/chat_history)")
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
        if len(chat.images) >= MAX_IMAGES:
            raise OvphiError(f"one question takes at most {MAX_IMAGES} images")
        chat.attach(read_image(argument), argument)
        print(f"(image {len(chat.images)} attached to the next question)")
    elif command == "/save":
        if not argument:
            raise OvphiError("/save needs a file name")
        try:
            write_atomically(argument, json.dumps(chat.transcript(), indent=2) + "\n")
        except OSError as error:
            raise OvphiError(f"/save {argument}: {error.strerror or error}") from None
        print(f"(conversation saved to {argument})")
    elif command == "/schema":
        if not argument:
            raise OvphiError("/schema needs a file name, or off")
        generation = replace(chat.generation, grammar=None if argument == "off" else schema_file_grammar(argument))
        chat.engine.check_generation(generation)
        chat.generation = generation
        print("(answers are free text)" if argument == "off" else f"(answers follow the JSON schema in {argument})")
    else:
        raise OvphiError(f"unknown command {command}; /help lists them")
    return True


def answer(chat, question):
    """Stream one answer, then its speed; Ctrl-C ends it early and keeps what was written."""
    events = chat.ask(question)
    status, speaking = StatusLine(), False
    try:
        for event in events:
            status.show(event)
            if isinstance(event, Chunk) and event.text:
                print(("" if speaking else "assistant> ") + event.text, end="", flush=True)
                speaking = True
        print("" if speaking else "assistant> ")
        timings = event.timings
        speed = f", {timings.tokens_per_s:.1f} tokens/s" if timings.tokens_per_s else ""
        print(f"({timings.answer_tokens} tokens, first after {timings.ttft_s or 0:.2f} s{speed})", file=sys.stderr)
    except KeyboardInterrupt:
        events.close()
        print(("" if speaking else "assistant> ") + " [stopped]")
    finally:
        status.close()


def pasted_more():
    """Whether more typed input is already waiting: the rest of a paste of several lines (a person types no
    second line within 50 ms). A pipe's lines stay questions of their own."""
    return sys.stdin.isatty() and bool(select.select([sys.stdin], [], [], 0.05)[0])


def read_question(first_line):
    """A question: the line itself with the lines pasted along with it, or the lines of a \"\"\" block up to
    the closing \"\"\"."""
    if first_line != BLOCK:
        lines = [first_line]
        while pasted_more():
            lines.append(input())
        return "\n".join(lines)
    lines = []
    while (line := input("... ")) != BLOCK:
        lines.append(line)
    return "\n".join(lines)


def history_file(path):
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return Path(path) if path else state / "ovphi" / "chat_history"


def keep_line_history(path):
    """Line editing and a history that lasts across sessions (where readline exists)."""
    try:
        import atexit
        import readline
    except ImportError:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError:
        return
    readline.set_history_length(1000)

    def save():
        try:
            readline.write_history_file(path)
        except OSError as error:
            print(f"ovphi chat: the line history was not saved in {path} ({error.strerror or error})",
                  file=sys.stderr)

    atexit.register(save)


def warm_up_in_background(engine):
    """Start engine.warm_up() on a thread, so that the first inference's one-time costs are paid while the
    user types; join the thread before the first turn. A failing warm-up is left for that turn to report."""
    def warm_up():
        try:
            engine.warm_up()
        except Exception:  # the same error comes back, as one line, from the first turn
            engine.reset()

    thread = threading.Thread(target=warm_up, daemon=True)
    thread.start()
    return thread


def main(args):
    generation = generation_config(args)
    options = runtime_options(args)
    images = [(read_image(source), source) for source in args.image]
    print(f"loading {args.model_dir} on {args.device} ({args.backend}) ...", file=sys.stderr, flush=True)
    chat = ChatSession(loaded(load(args.model_dir, args.backend, options), "ovphi chat"), generation)
    for image, source in images:
        chat.attach(image, source)
    warming = warm_up_in_background(chat.engine)
    keep_line_history(history_file(args.history_file))
    print(f"ovphi chat: {args.model_dir} on {chat.engine.device} ({chat.engine.name}). /help for commands.")
    interrupted = False
    while True:
        try:
            line = read_question(input("you> ").strip())
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            if interrupted:
                print()
                return
            print("\n(Ctrl-C again, Ctrl-D or /quit to leave)")
            interrupted = True
            continue
        interrupted = False
        if not line.strip():
            continue
        try:
            warming.join()
            if line.startswith("/"):
                if not run_command(chat, line):
                    return
            else:
                answer(chat, line)
        except KeyboardInterrupt:
            print(" [stopped]")
        except Exception as error:  # the chat outlives any error of a turn or a command
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"error: {message}")
