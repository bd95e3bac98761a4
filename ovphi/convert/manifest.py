"""The ovphi_manifest.json beside an IR: how it was made. One place reads and writes it."""
import json
from importlib import metadata
from pathlib import Path

MANIFEST = "ovphi_manifest.json"
PACKAGES = ["ovphi", "openvino", "openvino-tokenizers", "openvino-genai", "optimum-intel", "optimum", "nncf",
            "transformers", "torch", "tokenizers", "datasets"]


def package_versions():
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_manifest(ir_dir):
    """The manifest of an IR folder, or None for folders ovphi did not make."""
    path = Path(ir_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None
