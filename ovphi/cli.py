"""`ovphi COMMAND ...`: a thin dispatcher; each command is a module of ovphi.commands with
setup_arg_parser() and main(args)."""
import importlib
import os
import re
import signal
import sys

from .errors import OvphiError

COMMANDS = {
    "make-checkpoint": "build a random Phi-3.5-vision checkpoint (tiny for tests, full for latency)",
    "convert": "Hugging Face checkpoint -> OpenVINO IR folder (INT4 AWQ by default)",
    "ask": "one answer about images, streamed or as JSON",
    "chat": "an interactive, streaming chat about images",
    "bench": "latency reports (TTFT, TPOT, memory) as JSON, Markdown and a plot",
    "eval": "how close a converted model stays to its reference",
    "serve": "the warm model behind an OpenAI-compatible HTTP API",
    "export-ovms": "make an IR folder servable by OpenVINO Model Server",
}
SOURCE_LINE = re.compile(r"\S+\.(cpp|hpp|h|cc):\d+|^Exception from \S+$|/home/jenkins|^\[ ?\w+ ?\]$")


def usage():
    from importlib.metadata import version

    width = max(map(len, COMMANDS))
    lines = [f"usage: ovphi COMMAND [options]   (ovphi {version('ovphi')}; ovphi COMMAND --help for its options)",
             "", "commands:"] + [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def quiet_library_logs():
    """Library chatter (warnings about slow processors, export guesses) stays off the user's terminal.
    transformers reads its level from the environment: importing it here would cost the genai engine,
    which needs neither it nor torch, 3 s and 0.5 GB."""
    import logging

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # else a warning on every fork during calibration
    for library in ("optimum", "nncf"):
        logging.getLogger(library).setLevel(logging.ERROR)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def stop_on_sigterm():
    """SIGTERM (a timeout, docker stop, systemd) ends a command like Ctrl-C: nothing half-written. A child that a
    library forks (openvino_telemetry's sender, calibration workers) gets the default back: SIGTERM ends it
    quietly, instead of raising KeyboardInterrupt and printing a traceback of ovphi's."""
    signal.signal(signal.SIGTERM, interrupt)
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


def one_line(error):
    """What an error says, in one line. OpenVINO's C++ errors put a source location first and the cause
    after it: keep the cause, drop build paths."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not SOURCE_LINE.search(line)]
    message = "; ".join(useful[:2]) if useful else (lines[0] if lines else "")
    if not isinstance(error, OvphiError):  # unforeseen: say what kind, so that "None" still means something
        message = f"{type(error).__name__}: {message} (OVPHI_DEBUG=1 shows where)"
    return message


def leave_now(code):
    """Exit at once, after the atexit handlers (chat's line history): the interpreter's teardown, freeing the
    compiled models, took 2.6 s after Ctrl-C on the tiny model. Every output is whole by then."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def caused_by_interrupt(error):
    """Whether Ctrl-C or SIGTERM is behind an error a library raised instead (a signal during an import
    comes back as "RuntimeError: Error calling __set_name__ ...", the KeyboardInterrupt as its cause)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def interrupted(command):
    print(f"ovphi {command}: interrupted; nothing was left half-written", file=sys.stderr)
    leave_now(130)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from importlib.metadata import version

        print(f"ovphi {version('ovphi')}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"ovphi: unknown command {argv[0]!r}; `ovphi help` lists the commands", file=sys.stderr)
        return 2
    quiet_library_logs()
    stop_on_sigterm()
    try:
        module = importlib.import_module(f"ovphi.commands.{argv[0].replace('-', '_')}")
        args = module.setup_arg_parser().parse_args(argv[1:])
        return module.main(args) or 0
    except KeyboardInterrupt:
        interrupted(argv[0])
    except BrokenPipeError:  # the reader went away (`ovphi ask ... | head -c 1`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # one line for the user; OVPHI_DEBUG=1 shows the traceback
        if caused_by_interrupt(error):
            interrupted(argv[0])
        if os.environ.get("OVPHI_DEBUG"):
            raise
        print(f"ovphi {argv[0]}: error: {one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
