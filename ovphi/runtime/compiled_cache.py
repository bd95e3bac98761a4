"""The compiled-model cache: MODEL_DIR/model_cache/<settings>/, one folder per device, set of OpenVINO
properties, OpenVINO version and IR files. A load keeps the folder it used and removes the rest, blobs that
no current setting can use (6.8 GB of them had piled up in one model folder)."""
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

CACHE = "model_cache"


def cache_folder(model_dir, device, properties):
    """The folder that these settings' compiled models are written to and read from."""
    import openvino

    files = sorted((path.name, path.stat().st_size, path.stat().st_mtime_ns)
                   for path in Path(model_dir).glob("openvino_*"))
    settings = json.dumps([device, sorted(properties.items()), openvino.get_version(), files], default=str)
    return Path(model_dir) / CACHE / hashlib.sha256(settings.encode()).hexdigest()[:16]


def weight_files(model_dir, cache):
    """The files an IR folder loaded with the compiled-model cache folder `cache` (None: without the cache) maps
    its weights from: the folder's .bin files and that cache folder's blobs."""
    blobs = sorted(Path(cache).resolve().glob("*.blob")) if cache else []
    return [*sorted(Path(model_dir).resolve().glob("*.bin")), *blobs]


def tree_bytes(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) if path.is_dir() else 0


@dataclass(frozen=True)
class CacheUse:
    """What one load did to the compiled-model cache."""

    folder: Path
    bytes: int  # held for the current settings after the load
    written_bytes: int  # of which this load wrote
    removed_bytes: int  # of blobs for other settings, removed

    @property
    def changed(self):
        return bool(self.written_bytes or self.removed_bytes)

    def __str__(self):
        gigabytes = lambda count: f"{count / 1e9:.2f} GB"
        removed = f"; removed {gigabytes(self.removed_bytes)} of other settings'" if self.removed_bytes else ""
        return (f"compiled-model cache: {gigabytes(self.bytes)} in {self.folder} (this load wrote"
                f" {gigabytes(self.written_bytes)}{removed})")


def keep_only(folder, bytes_before):
    """Remove everything in MODEL_DIR/model_cache but `folder` (the current settings'); what the load did."""
    folder = Path(folder)
    removed = 0
    for other in folder.parent.iterdir() if folder.parent.is_dir() else []:
        if other != folder:
            removed += tree_bytes(other)
            if other.is_dir():
                shutil.rmtree(other, ignore_errors=True)  # another process's folder may be half-written
            else:
                other.unlink(missing_ok=True)
    held = tree_bytes(folder)
    return CacheUse(folder, held, max(held - bytes_before, 0), removed)
