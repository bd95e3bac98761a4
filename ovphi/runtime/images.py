"""The one image loader: a local path or an http(s) URL, with a timeout and a size limit."""
import io
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image, UnidentifiedImageError

from ..errors import OvphiError

MAX_DOWNLOAD_BYTES = 30 << 20


def read_image(source, timeout=10.0):
    """RGB PIL image from a path or URL; bad input raises OvphiError with one line."""
    source = str(source)
    scheme = urlparse(source).scheme
    if scheme in ("http", "https"):
        data = _download(source, timeout)
    elif scheme and len(scheme) > 1:
        raise OvphiError(f"{source}: only http(s) URLs and local paths are supported")
    else:
        path = Path(source)
        if not path.is_file():
            raise OvphiError(f"image {source} does not exist")
        data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except Image.DecompressionBombError:
        raise OvphiError(f"image {source} is too large (more than {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError) as error:
        raise OvphiError(f"image {source} cannot be read ({type(error).__name__}: corrupt, truncated or"
                         " not an image format PIL knows)") from None


def _download(url, timeout):
    import requests

    try:
        with requests.get(url, timeout=timeout, stream=True) as response:
            response.raise_for_status()
            data = response.raw.read(MAX_DOWNLOAD_BYTES + 1, decode_content=True)
    except requests.RequestException as error:
        raise OvphiError(f"cannot fetch {url} ({type(error).__name__})") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise OvphiError(f"{url} is larger than {MAX_DOWNLOAD_BYTES >> 20} MB")
    return data


def read_frames(source, max_frames=8):
    """Up to max_frames evenly spaced frames of an animated GIF or of a folder of images (name order)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
        if not files:
            raise OvphiError(f"{source} holds no images")
        return [read_image(p) for p in evenly_spaced(files, max_frames)]
    if not path.is_file():
        raise OvphiError(f"frames source {source} does not exist")
    try:
        with Image.open(path) as animation:
            count = getattr(animation, "n_frames", 1)
            frames = []
            for index in evenly_spaced(list(range(count)), max_frames):
                animation.seek(index)
                frames.append(animation.convert("RGB"))
            return frames
    except (UnidentifiedImageError, OSError, EOFError) as error:
        raise OvphiError(f"{source} cannot be read as an animation ({type(error).__name__})") from None


def evenly_spaced(items, count):
    if count < 1:
        raise OvphiError("--max-frames must be at least 1")
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)] if count > 1 else [items[0]]
