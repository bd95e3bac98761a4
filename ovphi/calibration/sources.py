"""(image, instruction) samples from a hub set (`contextual`, `textvqa`, `vqav2`), `local:PATH` or a
`builtin` set: the calibration set of `ovphi convert` and the evaluation set of `ovphi eval`.

One image per sample, long side capped at MAX_SIDE px, so calibration RAM stays bounded.
"""
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import OvphiError

MAX_SIDE = 600
BUILTIN = Path(__file__).with_name("builtin") / "samples.jsonl"
HUB_SETS = {
    "contextual": ("ucla-contextual/contextual_test", "test", "image_url", "instruction"),
    "textvqa": ("lmms-lab/textvqa", "validation", "image", "question"),
    "vqav2": ("lmms-lab/VQAv2", "validation", "image", "question"),
}
CHOICES = "contextual, textvqa, vqav2, builtin or local:PATH"


@dataclass
class Sample:
    sample_id: str
    image: Image.Image
    instruction: str


@dataclass
class Calibration:
    source: str
    samples: list
    skipped: list  # (sample id, reason) of samples that could not be used


def capped(image):
    """RGB copy of image with its long side at most MAX_SIDE pixels."""
    image = image.convert("RGB")
    scale = max(image.size) / MAX_SIDE
    if scale > 1:
        image = image.resize((int(image.width / scale), int(image.height / scale)), Image.BICUBIC)
    return image


def read_local_records(path):
    """(image path, instruction) records of a JSONL file, or of a folder with prompts.jsonl / prompts.txt."""
    path = Path(path)
    if path.is_dir():
        jsonl, txt = path / "prompts.jsonl", path / "prompts.txt"
        if jsonl.exists():
            path = jsonl
        elif txt.exists():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
            prompts = [line.strip() for line in txt.read_text().splitlines() if line.strip()]
            if not prompts:
                raise OvphiError(f"{txt} has no prompts")
            return [(image, prompts[i % len(prompts)]) for i, image in enumerate(images)]
        else:
            raise OvphiError(f"{path} has neither prompts.jsonl nor prompts.txt")
    if not path.exists():
        raise OvphiError(f"sample source {path} does not exist")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            records.append((path.parent / item["image"], item["instruction"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise OvphiError(f"{path}:{number} is not a JSON object with 'image' and 'instruction'") from None
    return records


def from_records(source, records, num_samples, seed):
    """Seeded choice of num_samples usable records; unreadable images are skipped and counted."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    samples, skipped = [], []
    for index in order:
        if len(samples) == num_samples:
            break
        image_path, instruction = records[index]
        try:
            with Image.open(image_path) as image:
                samples.append(Sample(str(Path(image_path).name), capped(image), instruction))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            skipped.append((str(image_path), type(error).__name__))
    return Calibration(source, samples, skipped)


def fetch_image(url, timeout=5.0, max_bytes=20 << 20):
    """The image at an http(s) URL, or None when the link is dead, slow or not an image."""
    import requests

    try:
        response = requests.get(url, timeout=timeout, stream=True)
        response.raise_for_status()
        content = response.raw.read(max_bytes + 1, decode_content=True)
        if len(content) > max_bytes:
            return None
        return Image.open(io.BytesIO(content))
    except (requests.RequestException, OSError, UnidentifiedImageError):
        return None


def from_hub(name, num_samples):
    """Stream a hub set in its published order, skipping samples whose image cannot be had."""
    import datasets

    repo, split, image_column, text_column = HUB_SETS[name]
    try:
        stream = datasets.load_dataset(repo, split=split, streaming=True)
        rows = iter(stream)
        first = next(rows)
    except Exception as error:  # datasets raises many types when the hub is unreachable
        raise OvphiError(
            f"cannot load dataset '{name}' ({repo}) from the Hugging Face hub"
            f" ({type(error).__name__}); offline, use --dataset builtin or --dataset local:PATH"
        ) from None
    samples, skipped = [], []
    for index, row in enumerate(_chain(first, rows)):
        if len(samples) == num_samples:
            break
        value = row[image_column]
        image = fetch_image(value) if isinstance(value, str) else value
        if image is None:
            skipped.append((f"{repo}#{index}", "image unreachable"))
            continue
        samples.append(Sample(f"{repo}#{index}", capped(image), row[text_column]))
    return Calibration(name, samples, skipped)


def _chain(first, rest):
    yield first
    yield from rest


def load_calibration(source, num_samples, seed=0):
    """Calibration samples from a source name; raises OvphiError unless num_samples usable ones exist."""
    if source in HUB_SETS:
        calibration = from_hub(source, num_samples)
    elif source == "builtin":
        calibration = from_records("builtin", read_local_records(BUILTIN), num_samples, seed)
    elif source.startswith("local:"):
        calibration = from_records(source, read_local_records(source[len("local:"):]), num_samples, seed)
    else:
        raise OvphiError(f"unknown calibration source '{source}': choose {CHOICES}")
    if len(calibration.samples) < num_samples:
        raise OvphiError(
            f"source '{source}' has {len(calibration.samples)} usable samples"
            f" ({len(calibration.skipped)} skipped), fewer than --num-samples {num_samples}"
        )
    return calibration
