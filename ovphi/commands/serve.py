"""`ovphi serve MODEL_DIR`: the warm model behind an OpenAI-compatible HTTP API.

    POST /v1/chat/completions   messages with text and image_url parts (data:, http(s)), stream or not
    GET  /v1/models, /health (loading / ready), /metrics (Prometheus)

Binds 127.0.0.1 by default; another address needs --api-key (or, knowingly, --insecure-no-auth).
"""
import argparse
import ipaddress
import sys
from importlib.metadata import version
from pathlib import Path

from ..errors import OvphiError
from ..files import check_model_folder
from ..images import MAX_IMAGES
from ..runtime import load
from .options import HelpFormatter, add_model_options, runtime_options
from .status import loaded


def setup_arg_parser():
    parser = argparse.ArgumentParser(prog="ovphi serve", description=__doc__, formatter_class=HelpFormatter)
    add_model_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", help="require Authorization: Bearer KEY")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="allow a non-loopback --host without --api-key")
    parser.add_argument("--model-name", help="the model id clients use (default: the folder's name)")
    parser.add_argument("--max-queue", type=int, default=8, help="requests waiting beyond the running ones")
    parser.add_argument("--max-images", type=int, default=MAX_IMAGES, help="images in one request")
    parser.add_argument("--max-body-mb", type=int, default=50, help="largest request body")
    parser.add_argument("--max-tokens", type=int, default=1024, help="an answer's default and largest length")
    parser.add_argument("--request-timeout", type=float, default=600.0, help="seconds a generation may take")
    parser.add_argument("--body-timeout", type=float, default=30.0, help="seconds a request body may take to arrive")
    parser.add_argument("--header-timeout", type=float, default=10.0,
                        help="seconds a connection may take to send a request's headers")
    parser.add_argument("--allow-private-urls", action="store_true",
                        help="fetch image URLs on loopback and private networks (refused by default: SSRF)")
    parser.add_argument("--allow-local-dir", help="serve local image paths beneath this folder")
    parser.add_argument("--cors-origin", action="append", default=[], help="allow this browser origin (repeat)")
    # clients take turns on one KV cache: each conversation's next turn starts from its image prefix, 0.6 GB
    # per picture at full size, so the server keeps more of them than ask and chat (1024)
    parser.set_defaults(prefix_cache_mb=SERVE_PREFIX_CACHE_MB)
    return parser


SERVE_PREFIX_CACHE_MB = 4096


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def made_at(model_dir):
    """When the folder's model was made: its manifest's time (the folder's own time changes with its compiled-model
    cache)."""
    manifest = model_dir / "ovphi_manifest.json"
    return (manifest if manifest.exists() else model_dir).stat().st_mtime


def main(args):
    import uvicorn

    from ..server import ServerSettings, create_app
    from ..server.connections import with_header_deadline

    if not is_loopback(args.host) and not args.api_key and not args.insecure_no_auth:
        raise OvphiError(f"binding {args.host} opens the model to the network: pass --api-key KEY"
                         " (or --insecure-no-auth)")
    if not 1 <= args.port <= 65535:
        raise OvphiError(f"--port must be 1 to 65535, not {args.port}")
    for name in ("max_queue", "max_images", "max_body_mb", "max_tokens"):
        if getattr(args, name) < 1:
            raise OvphiError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("request_timeout", "body_timeout", "header_timeout"):
        if not getattr(args, name) > 0:
            raise OvphiError(f"--{name.replace('_', '-')} must be more than 0 seconds")
    if args.allow_local_dir and not Path(args.allow_local_dir).is_dir():
        raise OvphiError(f"--allow-local-dir {args.allow_local_dir} is not a folder")
    options = runtime_options(args)
    model_dir = Path(args.model_dir)
    check_model_folder(model_dir)
    settings = ServerSettings(model_name=args.model_name or Path(args.model_dir).resolve().name,
                              api_key=args.api_key, max_queue=args.max_queue, max_images=args.max_images,
                              max_body_mb=args.max_body_mb, max_tokens=args.max_tokens,
                              request_timeout_s=args.request_timeout, body_timeout_s=args.body_timeout,
                              allow_private_urls=args.allow_private_urls,
                              allow_local_dir=args.allow_local_dir, cors_origins=tuple(args.cors_origin),
                              created=int(made_at(model_dir)), fingerprint=f"ovphi-{version('ovphi')}-{args.backend}")
    app = create_app(lambda: loaded(load(args.model_dir, args.backend, options), "ovphi serve", sys.stdout), settings)
    print(f"ovphi serve: {settings.model_name} on http://{args.host}:{args.port}/v1 (loading, then warming up);"
          f" chat page at http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                http=with_header_deadline(args.header_timeout))
