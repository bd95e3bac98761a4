"""Convert a Phi-3.5-vision checkpoint to OpenVINO IR with optimum-intel, compressing weights with nncf.

The language model gets the recipe's INT4/INT8 weights; text embeddings and the projection get INT8_SYM
weights (optimum-intel's VLM default), and the vision encoder static INT8 (weights and activations,
vision.py) where this CPU has int8 dot products or the recipe asks, else weight-only INT8 there too. Everything is written to a folder beside OUT
and renamed into place at the end, so an interrupted run never leaves an IR that looks complete.
"""
import errno
import hashlib
import json
import re
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import openvino as ov

from ..cpu import cpu_flags
from ..errors import OvphiError
from ..files import check_model_folder, check_replaceable, partial_folder, read_json
from ..model import copy_model_code, register_auto_classes
from ..model.constants_phi3_v import AUTO_MAP
from ..model.tokens import stop_token_ids
from ..resources import paging_out, peak_rss_bytes, release_memory
from .detokenizer import TOKEN_BYTES, write_token_bytes
from .logits import TOKENLESS_IDS_MASKED, mask_tokenless_logits
from .manifest import MANIFEST, package_versions
from .rope import restore_rope_tables
from .saving import save_in_place
from .stats import ir_stats
from .vision import CALIBRATION_IMAGES, choose_vision, quantize_vision

DEFAULT_MODEL = "microsoft/Phi-3.5-vision-instruct"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
LANGUAGE_MODEL = "openvino_language_model.xml"


@dataclass
class Recipe:
    """How the weights are stored; defaults are the published OpenVINO int4 recipe for Phi-3.5-vision."""

    weight_format: str = "int4"
    sym: bool = False
    group_size: int = 128
    ratio: float = 1.0
    awq: bool | None = None  # None: on for int4, off otherwise
    scale_estimation: bool = False
    gptq: bool = False
    dataset: str = "contextual"
    num_samples: int = 32
    backup_precision: str = "int8_asym"
    seed: int = 0
    vision: str = "auto"  # "int8-static" where this CPU has int8 dot products, else "int8": weight-only

    def __post_init__(self):
        if self.awq is None:
            self.awq = self.weight_format == "int4"

    @property
    def compressed(self):
        return self.weight_format in ("int8", "int4")

    @property
    def data_aware(self):
        return self.weight_format == "int4" and (self.awq or self.scale_estimation or self.gptq or self.ratio < 1)

    @property
    def static_vision(self):
        return self.compressed and self.vision == "int8-static"

    def check(self, config):
        """Refuse recipes nncf would reject, with the fix in the message."""
        if self.weight_format not in ("fp32", "fp16", "int8", "int4"):
            raise OvphiError(f"unknown weight format '{self.weight_format}': choose fp32, fp16, int8 or int4")
        if self.weight_format != "int4" and (self.awq or self.scale_estimation or self.gptq):
            raise OvphiError(f"AWQ, scale estimation and GPTQ apply to int4 only, not {self.weight_format}")
        if not 0 < self.ratio <= 1:
            raise OvphiError(f"ratio {self.ratio} must be in (0, 1]")
        if self.num_samples < 1:
            raise OvphiError("num_samples must be at least 1")
        if self.backup_precision not in ("int8_asym", "int8_sym", "none"):
            raise OvphiError(f"backup precision {self.backup_precision} is not one of int8_asym, int8_sym, none")
        if self.vision not in ("auto", "int8-static", "int8"):
            raise OvphiError(f"unknown vision quantization '{self.vision}': choose auto, int8-static or int8")
        if self.static_vision and self.num_samples < 2:
            raise OvphiError("static INT8 vision needs 2 samples or more (one is held out); or use vision int8")
        if self.weight_format == "int4" and self.group_size > 0:
            widths = {config["hidden_size"], config["intermediate_size"]}
            bad = sorted(w for w in widths if w % self.group_size)
            if bad:
                divisors = [g for g in (32, 64, 128) if all(w % g == 0 for w in widths)]
                raise OvphiError(
                    f"group size {self.group_size} does not divide the language model's input widths {bad};"
                    f" use group size {divisors[-1] if divisors else -1} or -1 (per-channel)"
                )

    def quantization_config(self, processor_dir):
        from optimum.intel import OVWeightQuantizationConfig

        if self.weight_format == "int8":
            return OVWeightQuantizationConfig(bits=8, sym=self.sym, group_size=-1)
        return OVWeightQuantizationConfig(
            bits=4, sym=self.sym, group_size=self.group_size, ratio=self.ratio,
            quant_method="awq" if self.awq else "default", scale_estimation=self.scale_estimation,
            gptq=self.gptq, backup_precision=self.backup_precision, num_samples=self.num_samples,
            dataset="textvqa" if self.data_aware else None,  # selects the (image, question) columns
            processor=str(processor_dir), tokenizer=str(processor_dir),
        )


def resolve_model(model, revision):
    """(local folder, revision) of a local checkpoint or a hub id (downloaded unless offline)."""
    path = Path(model)
    if not path.exists() and HUB_ID.match(model) and not model.startswith("."):
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(model, revision=revision))
        except Exception as error:  # offline, unknown repo, no access: one line for each
            raise OvphiError(f"no folder {model} here, and it cannot be downloaded from the Hugging Face hub"
                             f" ({type(error).__name__}); offline, pass a local checkpoint folder") from None
    check_model_folder(path)
    config_file = path / "config.json"
    if (path / LANGUAGE_MODEL).exists():
        raise OvphiError(f"{model} is already an OpenVINO IR folder, not a model folder to convert")
    if not config_file.exists():
        raise OvphiError(f"{model} is not a model folder: it has no config.json")
    config = read_json(config_file, "the checkpoint's config")
    if config.get("model_type") != "phi3_v":
        raise OvphiError(f"{model} is a '{config.get('model_type')}' model, not Phi-3.5-vision (phi3_v)")
    return path, config


def weight_files(folder):
    return sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))


# bytes of an IR's weights per byte of a bf16 checkpoint's, by weight format (measured: full-size INT4 2.4 GB of 8.3)
IR_BYTES_PER_CHECKPOINT_BYTE = {"int4": 0.35, "int8": 0.55, "fp16": 1.0, "fp32": 2.0}


def check_disk(source, out, recipe):
    """Refuse, before the export, a disk that cannot hold the float export and the IR beside OUT."""
    checkpoint = sum(path.stat().st_size for path in weight_files(source))
    export = checkpoint * (2 if recipe.weight_format == "fp32" else 1)
    needed = export + checkpoint * IR_BYTES_PER_CHECKPOINT_BYTE.get(recipe.weight_format, 1)
    folder = out.resolve().parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OvphiError(f"{folder} has {free / 1e9:.1f} GB free; converting needs about {needed / 1e9:.1f} GB"
                         " there (the float export, then the IR): free some space or choose another OUT")
    return needed


def weights_sha256(folder):
    """SHA-256 over the checkpoint's weight files, in name order."""
    digest = hashlib.sha256()
    for weights in weight_files(folder):
        with open(weights, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def complete_ir_folder(ir_dir, source, trust_remote_code):
    """Processor files and model code beside the IR, and stop tokens that end a turn; returns (the stop ids, the
    tokenizer's size)."""
    from transformers import AutoTokenizer

    for item in source.iterdir():
        keep = item.suffix in (".json", ".jinja", ".model", ".py") and "index" not in item.name
        if keep and item.name != "config.json" and not (ir_dir / item.name).exists():
            shutil.copy(item, ir_dir / item.name)
    if not trust_remote_code:
        copy_model_code(ir_dir)
        for name, classes in AUTO_MAP.items():
            settings = json.loads((ir_dir / name).read_text())
            settings["auto_map"] = settings.get("auto_map", {}) | classes
            (ir_dir / name).write_text(json.dumps(settings, indent=2))
    tokenizer = AutoTokenizer.from_pretrained(ir_dir)
    stops = stop_token_ids(tokenizer)
    generation_file = ir_dir / "generation_config.json"
    generation = json.loads(generation_file.read_text()) if generation_file.exists() else {}
    generation.update(eos_token_id=stops, bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    generation_file.write_text(json.dumps(generation, indent=2))
    return stops, len(tokenizer)


def edit_language_model(ir_dir, config, tokens, rope_tables):
    """The language model's edits, read and written once (each write is its 2 GB again at full size): the LongRoPE
    tables back in f32 (with rope_tables) and -inf logits for the ids with no token; returns (tables restored,
    ids masked)."""
    xml = ir_dir / LANGUAGE_MODEL
    model = ov.Core().read_model(xml)
    restored = restore_rope_tables(model, config) if rope_tables else 0
    masked = mask_tokenless_logits(model, tokens)
    if restored or masked:
        save_in_place(model, xml)
    return restored, masked


def export(source, export_dir, recipe, trust_remote_code):
    """optimum-intel export of the four IRs and the OpenVINO tokenizers, weights in fp32 or fp16."""
    from optimum.exporters.openvino import main_export
    from optimum.intel import OVConfig

    from ..model.checkpoint import ensure_clip_config

    ensure_clip_config()
    dtype = "fp32" if recipe.weight_format == "fp32" else "fp16"
    with paging_out(lambda: weight_files(source)):  # the checkpoint's mapped shards, once copied to the model
        main_export(str(source), export_dir, task="image-text-to-text", trust_remote_code=trust_remote_code,
                    convert_tokenizer=True, ov_config=OVConfig(dtype=dtype))


def compress(export_dir, out_dir, recipe, calibration, trust_remote_code=False):
    """nncf weight compression through optimum-intel's OVQuantizer, calibrated one image at a time."""
    import datasets
    from optimum.intel import OVConfig, OVModelForVisualCausalLM, OVQuantizer

    model = OVModelForVisualCausalLM.from_pretrained(export_dir, compile=False, trust_remote_code=trust_remote_code)
    calibration_dataset = None
    if recipe.data_aware:
        calibration_dataset = datasets.Dataset.from_dict({
            "image": [s.image for s in calibration.samples],
            "question": [s.instruction for s in calibration.samples],
        })
    config = OVConfig(quantization_config=recipe.quantization_config(export_dir))
    with paging_out(lambda: export_dir.glob("*.bin")):  # each float weight is read once
        OVQuantizer(model, trust_remote_code=trust_remote_code).quantize(
            ov_config=config, calibration_dataset=calibration_dataset, save_directory=out_dir)
    for item in export_dir.iterdir():
        if not (out_dir / item.name).exists():
            shutil.copy(item, out_dir / item.name)


def step(number, total, text, started, interrupted):
    if interrupted():
        raise KeyboardInterrupt
    print(f"[{number}/{total}] {text} (at {time.perf_counter() - started:.0f} s)", flush=True)


@contextmanager
def remembered_interrupts():
    """Yields a function that tells whether Ctrl-C (SIGINT) or SIGTERM (timeout, docker stop, systemd) came
    inside the block. Either raises KeyboardInterrupt, but a library may turn that into another error
    (OpenVINO's PyTorch frontend: "Check 'false' failed") or swallow it and carry on (seen during optimum's
    export); convert asks between steps."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield lambda: False
        return
    received = []

    def on_signal(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(received)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def convert(model, out, recipe=None, revision=None, trust_remote_code=False, force=False):
    """Convert MODEL (hub id or folder) to an OpenVINO IR folder at OUT. Returns the manifest as a dict.
    An existing OUT is replaced only with force; OUT is never the model folder or one that holds it."""
    from ..calibration.sources import load_calibration

    recipe = recipe or Recipe()
    model = str(model)
    started = time.perf_counter()
    out = Path(out)
    source, config = resolve_model(model, revision)
    check_replaceable(out, ours=(), force=force, keep=[source])
    if out.exists() and any(out.iterdir()) and not force:
        raise OvphiError(f"{out} exists; pass --force to replace it")
    chosen_because = None
    if recipe.vision == "auto":
        vision_choice, chosen_because = choose_vision(cpu_flags())
        recipe = replace(recipe, vision=vision_choice)
        if recipe.compressed:
            print(f"vision encoder: {vision_choice} ({chosen_because})", flush=True)
    recipe.check(config)
    needed = check_disk(source, out, recipe)
    needs_samples = recipe.data_aware or recipe.static_vision
    calibration = load_calibration(recipe.dataset, recipe.num_samples, recipe.seed) if needs_samples else None
    if not trust_remote_code:
        register_auto_classes()
    with remembered_interrupts() as interrupted, partial_folder(out) as work:
        try:
            total = 2 + recipe.compressed + recipe.static_vision
            step(1, total, f"exporting {source} to OpenVINO IR", started, interrupted)
            export(source, work / "export", recipe, trust_remote_code)
            stop_ids, tokens = complete_ir_folder(work / "export", source, trust_remote_code)
            ir_dir = work / "export"
            vision = {"quantization": "int8 weights" if recipe.compressed else recipe.weight_format}
            release_memory()
            if recipe.static_vision:  # before the language model's compression, whose memory is not all returned
                images = min(recipe.num_samples - 1, CALIBRATION_IMAGES)
                step(2, total, f"static INT8 for the vision encoder ({images} images)", started, interrupted)
                (work / "vision").mkdir()
                vision = quantize_vision(work / "export", work / "vision", calibration.samples,
                                         gate=bool(chosen_because))
                if "kept_weight_only_because" in vision:
                    print(f"vision encoder: int8 weights only ({vision['kept_weight_only_because']})", flush=True)
                release_memory()
            if recipe.compressed:
                awq = f", AWQ on {recipe.num_samples} samples" if recipe.data_aware else ""
                step(total - 1, total, f"compressing weights ({recipe.weight_format}{awq})", started, interrupted)
                compress(work / "export", work / "ir", recipe, calibration, trust_remote_code)
                ir_dir = work / "ir"
                for item in (work / "vision").glob("*"):
                    item.replace(ir_dir / item.name)
                release_memory()
            if chosen_because and recipe.compressed:
                vision["chosen"] = chosen_because
            restored, masked = edit_language_model(ir_dir, config, tokens,
                                                   rope_tables=recipe.weight_format != "fp32" and not trust_remote_code)
            write_token_bytes(ir_dir)
            step(total, total, "measuring the IR and writing the manifest", started, interrupted)
            manifest = {
                "source": {"model": model, "path": str(source), "revision": revision,
                           "weights_sha256": weights_sha256(source),
                           "code": "checkpoint remote code" if trust_remote_code else "ovphi's own implementation"},
                "recipe": asdict(recipe) | {"data_aware": recipe.data_aware},
                "calibration": None if calibration is None else {
                    "source": calibration.source, "sample_ids": [s.sample_id for s in calibration.samples],
                    "skipped": calibration.skipped, "notes": calibration.notes},
                "vision": vision,
                "stop_token_ids": stop_ids,
                "rope_tables_restored_to_f32": restored,
                "detokenizer": TOKEN_BYTES,
                TOKENLESS_IDS_MASKED: masked,
                "parts": ir_stats(ir_dir),
                "versions": package_versions(),
                "wall_seconds": round(time.perf_counter() - started, 1),
                "peak_rss_bytes": peak_rss_bytes(),
            }
            (ir_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
            for item in ir_dir.iterdir():  # the IR, moved up into the folder that becomes OUT
                item.rename(work / item.name)
            shutil.rmtree(work / "export", ignore_errors=True)
            shutil.rmtree(work / "ir", ignore_errors=True)
            shutil.rmtree(work / "vision", ignore_errors=True)
            if interrupted():
                raise KeyboardInterrupt
            return manifest
        except Exception as error:
            if interrupted():
                raise KeyboardInterrupt from error
            if getattr(error, "errno", None) == errno.ENOSPC or "iostream error" in str(error):
                raise OvphiError(f"the disk of {out.resolve().parent} filled up during the conversion, which needs"
                                 f" about {needed / 1e9:.1f} GB there; nothing was kept") from None
            raise
