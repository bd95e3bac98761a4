"""Option groups that several commands share, defined once: the model and where it runs, and generation;
and the help format of every command."""
import argparse
import json

from ..files import read_json
from ..runtime import registry
from ..runtime.constraint import schema_grammar
from ..runtime.config import (
    KV_CACHE_PRECISIONS,
    PERFORMANCE_HINTS,
    PRECISIONS,
    GenerationConfig,
    RuntimeOptions,
    parse_properties,
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The command's docstring as written, and each option's default where it has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) \
                and "default" not in text:
            text += " (default: %(default)s)"
        return text


def add_device_options(parser):
    """Where and how the model runs (RuntimeOptions)."""
    defaults = RuntimeOptions()
    parser.add_argument("--device", default=defaults.device, help="CPU, GPU, GPU.N or AUTO")
    parser.add_argument("--precision", choices=PRECISIONS, help="inference precision (default: the device's)")
    parser.add_argument("--kv-cache-precision", choices=KV_CACHE_PRECISIONS, help="default: the device's")
    parser.add_argument("--performance-hint", default=defaults.performance_hint, choices=PERFORMANCE_HINTS,
                        help="what OpenVINO optimises for")
    parser.add_argument("--no-cache", action="store_true", help="do not keep compiled models in MODEL_DIR/model_cache")
    parser.add_argument("--prefix-cache-mb", type=int, default=defaults.prefix_cache_mb,
                        help="KV snapshots kept for new conversations about images seen before (0: off)")
    parser.add_argument("--slots", type=int, default=defaults.slots,
                        help="conversations the genai-batch engine runs at once")
    parser.add_argument("--kv-cache-gb", type=int, default=defaults.kv_cache_gb,
                        help="the genai-batch engine's KV cache (default: an eighth of the memory)")
    parser.add_argument("--ov-option", action="append", default=[], metavar="KEY=VALUE",
                        help="another OpenVINO property, e.g. DYNAMIC_QUANTIZATION_GROUP_SIZE=64 (repeat)")


def add_model_options(parser):
    parser.add_argument("model_dir", help="phi3_v OpenVINO IR folder (from `ovphi convert`); a checkpoint folder"
                                          " with --backend pytorch")
    parser.add_argument("--backend", default=registry.DEFAULT, choices=registry.names(), help=registry.help_text())
    add_device_options(parser)


def runtime_options(args, precision=None):
    return RuntimeOptions(device=args.device, precision=precision or args.precision,
                          kv_cache_precision=args.kv_cache_precision, performance_hint=args.performance_hint,
                          cache=not args.no_cache, properties=parse_properties(args.ov_option),
                          prefix_cache_mb=args.prefix_cache_mb, slots=args.slots, kv_cache_gb=args.kv_cache_gb)


def device_arguments(options):
    """The command-line arguments that runtime_options() turns back into these RuntimeOptions."""
    arguments = ["--device", options.device, "--performance-hint", options.performance_hint,
                 "--prefix-cache-mb", str(options.prefix_cache_mb), "--slots", str(options.slots),
                 "--kv-cache-gb", str(options.kv_cache_gb)]
    arguments += ["--precision", options.precision] if options.precision else []
    arguments += ["--kv-cache-precision", options.kv_cache_precision] if options.kv_cache_precision else []
    arguments += [] if options.cache else ["--no-cache"]
    return arguments + [f"--ov-option={key}={value}" for key, value in options.properties.items()]


def add_generation_options(parser, max_new_tokens=GenerationConfig.max_new_tokens):
    defaults = GenerationConfig()
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help="longest answer, in tokens")
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="0: greedy")
    parser.add_argument("--top-p", type=float, default=defaults.top_p, help="nucleus sampling: 1 is off")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="0: off")
    parser.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty, help="1: off")
    parser.add_argument("--seed", type=int, help="of sampling (default: from the clock)")
    parser.add_argument("--num-crops", type=int, help="HD crops per image, 1 to 16 (default: the folder's, 4)")
    parser.add_argument("--json-schema", metavar="FILE", help="constrain answers to the JSON schema in this file")
    parser.add_argument("--stop", action="append", default=[], metavar="TEXT",
                        help="end the answer where TEXT begins (repeat for several)")


def generation_config(args):
    return GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed,
                            num_crops=args.num_crops, grammar=schema_file_grammar(args.json_schema),
                            stop=tuple(args.stop))


def schema_file_grammar(path):
    """The grammar of answers valid against the JSON schema in a file (None without a file)."""
    return None if path is None else schema_grammar(json.dumps(read_json(path, "a JSON schema")))
