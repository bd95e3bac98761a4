"""`ovphi COMMAND ...`: a thin dispatcher; each command is a module with setup_arg_parser() and main(args)."""
import importlib
import os
import sys

from .errors import OvphiError

COMMANDS = {
    "make-checkpoint": "ovphi.model.checkpoint_cli",
    "convert": "ovphi.convert.cli",
    "ask": "ovphi.runtime.ask",
    "chat": "ovphi.runtime.chat_cli",
    "bench": "ovphi.bench",
    "eval": "ovphi.evaluation.evaluate",
}


def quiet_library_logs():
    """Library chatter (warnings about slow processors, export guesses) stays off the user's terminal.
    transformers reads its level from the environment: importing it here would cost the genai backend,
    which needs neither it nor torch, 3 s and 0.5 GB."""
    import logging

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # else a warning on every fork during calibration
    for name in ("optimum", "nncf"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: ovphi {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    quiet_library_logs()
    module = importlib.import_module(COMMANDS[argv[0]])
    args = module.setup_arg_parser().parse_args(argv[1:])
    try:
        return module.main(args) or 0
    except KeyboardInterrupt:
        print(f"ovphi {argv[0]}: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
    except Exception as error:  # one line for the user; OVPHI_DEBUG=1 shows the traceback
        if os.environ.get("OVPHI_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if not isinstance(error, OvphiError):  # unforeseen: say what kind, so that "None" still means something
            message = f"{type(error).__name__}: {message} (OVPHI_DEBUG=1 shows where)"
        print(f"ovphi {argv[0]}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
