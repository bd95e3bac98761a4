"""The one home of (image, instruction) sample sources: a hub set (`contextual`, `textvqa`, `vqav2`),
`local:PATH` or a `builtin` set. They feed `ovphi convert`'s calibration, `ovphi eval` and `ovphi bench`.

One image per sample, long side capped at MAX_SIDE px, so calibration RAM stays bounded.
"""
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import OvphiError
from ..images import decode, fetch, to_rgb

MAX_SIDE = 600
BUILTIN = Path(__file__).with_name("builtin") / "samples.jsonl"  # calibration: 36 drawn images
EVAL_BUILTIN = Path(__file__).with_name("eval_builtin") / "samples.jsonl"  # evaluation: 12 others
HUB_SETS = {
    "contextual": ("ucla-contextual/contextual_test", "test", "image_url", "instruction"),
    "textvqa": ("lmms-lab/textvqa", "validation", "image", "question"),
    "vqav2": ("lmms-lab/VQAv2", "validation", "image", "question"),
}
FALLBACK = {"contextual": "textvqa"}  # contextual's image links are largely dead
CHOICES = "contextual, textvqa, vqav2, builtin or local:PATH"


@dataclass
class Sample:
    sample_id: str
    image: Image.Image
    instruction: str


@dataclass
class Samples:
    source: str
    samples: list
    skipped: list  # (sample id, reason) of samples that could not be used
    notes: list = field(default_factory=list)  # what was done instead, e.g. a fallback to another set


def capped(image):
    """RGB copy of image with its long side at most MAX_SIDE pixels."""
    image = to_rgb(image)
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
    """Seeded choice of num_samples usable records (all by default); unreadable images are skipped and counted."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    samples, skipped = [], []
    for index in order:
        if num_samples is not None and len(samples) == num_samples:
            break
        image_path, instruction = records[index]
        try:
            with Image.open(image_path) as image:
                samples.append(Sample(str(Path(image_path).name), capped(image), instruction))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            skipped.append((str(image_path), type(error).__name__))
    return Samples(source, samples, skipped)


def hub_rows(repo, split):
    """The rows of a hub set, streamed; OvphiError when the hub cannot be reached."""
    import datasets

    try:
        rows = iter(datasets.load_dataset(repo, split=split, streaming=True))
        first = next(rows)
    except Exception as error:  # datasets raises many types when the hub is unreachable
        raise OvphiError(f"cannot load dataset {repo} from the Hugging Face hub ({type(error).__name__});"
                         " offline, use --dataset builtin or --dataset local:PATH") from None
    yield first
    yield from rows


def from_hub(name, num_samples):
    """A hub set's samples in its published order, skipping those whose image cannot be had."""
    repo, split, image_column, text_column = HUB_SETS[name]
    samples, skipped = [], []
    for index, row in enumerate(hub_rows(repo, split)):
        if len(samples) == num_samples:
            break
        value = row[image_column]
        try:
            image = decode(fetch(value), value) if isinstance(value, str) else value
        except OvphiError as error:
            skipped.append((f"{repo}#{index}", str(error)))
            continue
        samples.append(Sample(f"{repo}#{index}", capped(image), row[text_column]))
    return Samples(name, samples, skipped)


def load_samples(source, num_samples=None, seed=0, builtin=BUILTIN):
    """Samples of a source name (see CHOICES); num_samples None: all of a local or builtin set, 12 of a
    hub set. A `contextual` that cannot give num_samples images falls back to `textvqa`, with a note."""
    if source in HUB_SETS:
        wanted = num_samples or 12
        found = from_hub(source, wanted)
        if len(found.samples) < wanted and source in FALLBACK:
            note = (f"{source} gave {len(found.samples)} of {wanted} images ({len(found.skipped)} links dead);"
                    f" using {FALLBACK[source]} instead")
            print(f"note: {note}", flush=True)
            found = from_hub(FALLBACK[source], wanted)
            found.notes.append(note)
        return found
    if source == "builtin":
        return from_records("builtin", read_local_records(builtin), num_samples, seed)
    if source.startswith("local:"):
        return from_records(source, read_local_records(source[len("local:"):]), num_samples, seed)
    raise OvphiError(f"unknown sample source '{source}': choose {CHOICES}")


def load_calibration(source, num_samples, seed=0):
    """Calibration samples; raises OvphiError unless num_samples usable ones exist."""
    calibration = load_samples(source, num_samples, seed)
    if len(calibration.samples) < num_samples:
        raise OvphiError(
            f"source '{source}' has {len(calibration.samples)} usable samples"
            f" ({len(calibration.skipped)} skipped), fewer than --num-samples {num_samples}"
        )
    return calibration
