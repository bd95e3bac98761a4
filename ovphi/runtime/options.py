"""Command-line options shared by `ovphi ask`, `ovphi chat` and `ovphi bench`: model, device, generation."""
from ..errors import OvphiError
from . import BACKENDS


def add_model_options(parser):
    parser.add_argument("model_dir", help="phi3_v OpenVINO IR folder (from `ovphi convert`); a checkpoint folder"
                                          " with --backend pytorch")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, GPU.N or AUTO")
    parser.add_argument("--backend", default="optimum", choices=BACKENDS)
    parser.add_argument("--num-crops", type=int, help="HD crops per image (default: the folder's, 4)")
    parser.add_argument("--precision", help="INFERENCE_PRECISION_HINT, e.g. f32 or bf16")
    parser.add_argument("--kv-cache-precision", help="KV_CACHE_PRECISION, e.g. u8, f16")
    parser.add_argument("--performance-hint", default="LATENCY", help="LATENCY or THROUGHPUT")
    parser.add_argument("--no-cache", action="store_true", help="do not keep compiled models in MODEL_DIR/model_cache")
    add_ov_option(parser)


def add_ov_option(parser):
    parser.add_argument("--ov-option", action="append", default=[], metavar="KEY=VALUE",
                        help="another OpenVINO property, e.g. DYNAMIC_QUANTIZATION_GROUP_SIZE=64 (repeat)")


def ov_options(args):
    """{KEY: VALUE} of the --ov-option arguments."""
    pairs = [item.split("=", 1) for item in args.ov_option]
    bad = [item for item, pair in zip(args.ov_option, pairs) if len(pair) != 2 or not pair[0]]
    if bad:
        raise OvphiError(f"--ov-option {bad[0]} is not KEY=VALUE")
    return dict(pairs)


def add_generation_options(parser, max_new_tokens=256):
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    parser.add_argument("--do-sample", action="store_true")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--repetition-penalty", type=float)
    parser.add_argument("--seed", type=int)


def model_options(args):
    """Keyword arguments of runtime.load from parsed options."""
    return dict(device=args.device, backend=args.backend, performance_hint=args.performance_hint,
                cache=not args.no_cache, precision=args.precision, kv_cache_precision=args.kv_cache_precision,
                extra=ov_options(args))


def generation_options(args):
    """Keyword arguments of a turn from parsed options (unset ones are left to the backend)."""
    options = {"max_new_tokens": args.max_new_tokens, "do_sample": args.do_sample}
    for name in ("temperature", "top_p", "top_k", "repetition_penalty", "seed"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options
