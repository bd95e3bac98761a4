"""The one image reader: a local path or an http(s) URL, under one set of limits (a download's size and
its whole duration, a local file's size), converted to RGB the way a viewer shows it."""
import hashlib
import io
import socket
import time
from pathlib import Path
from urllib.parse import urljoin, urlparse

import certifi
import urllib3
from PIL import Image, UnidentifiedImageError

from .errors import OvphiError

MAX_BYTES = 30 << 20  # a download or a local image file
DOWNLOAD_SECONDS = 15.0  # the whole download, not each read
MAX_PIXELS = 50_000_000  # one picture, read from its header before it is decoded (a 50 Mpx phone photo: 150 MB RGB)
MAX_IMAGES = 8  # pictures in one turn (ask, chat; the server's default): each is decoded, cropped and encoded


def image_digest(image):
    """SHA-256 of an image's pixels, size and mode: what makes two pictures the same picture (two different
    ones of the same size, which give the same token count, differ here)."""
    return hashlib.sha256(image.tobytes() + repr((image.size, image.mode)).encode()).hexdigest()


REDIRECTS = 5  # at most, for a download


def fetch(url, seconds=None, max_bytes=None, check_address=None):
    """The bytes at an http(s) URL, within `seconds` in all and `max_bytes` (default: the module's limits);
    OvphiError otherwise. Redirects are followed hop by hop: each hop's host is resolved once, every address it
    has is given to check_address(host, address) (which raises to refuse it: a server's guard against private
    addresses), and the connection goes to the address that was checked, so a redirect or a second DNS answer
    cannot lead elsewhere."""
    seconds, max_bytes = seconds or DOWNLOAD_SECONDS, max_bytes or MAX_BYTES
    deadline = time.monotonic() + seconds
    for _ in range(REDIRECTS + 1):
        response = open_checked(url, check_address, min(seconds, 10.0))
        try:
            location = response.headers.get("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if response.status >= 400:
                raise OvphiError(f"cannot fetch {url} (HTTP {response.status})")
            data = bytearray()
            while block := response.read1(1 << 16):  # what has arrived, not a full block
                data += block
                if len(data) > max_bytes:
                    raise OvphiError(f"{url} is larger than {max_bytes >> 20} MB")
                if time.monotonic() > deadline:
                    raise OvphiError(f"{url} took longer than {seconds:.0f} s to download")
            return bytes(data)
        except (OSError, urllib3.exceptions.HTTPError) as error:
            raise OvphiError(f"cannot fetch {url} ({type(error).__name__})") from None
        finally:
            response.release_conn()
    raise OvphiError(f"{url} redirects more than {REDIRECTS} times")


def open_checked(url, check_address, timeout):
    """The response headers of GET url from the host's first address, once check_address passed all of them."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise OvphiError(f"{url} is not an http(s) URL")
    host, secure = parsed.hostname, parsed.scheme == "https"
    port = parsed.port or (443 if secure else 80)
    try:
        addresses = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    except (socket.gaierror, UnicodeError):
        raise OvphiError(f"cannot resolve image host {host}") from None
    for address in addresses if check_address else ():
        check_address(host, address)
    tls = dict(server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    pool = (urllib3.HTTPSConnectionPool if secure else urllib3.HTTPConnectionPool)(
        addresses[0], port, timeout=timeout, retries=False, **(tls if secure else {}))
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    try:
        return pool.urlopen("GET", path, headers={"Host": parsed.netloc.rpartition("@")[2]}, redirect=False,
                            preload_content=False, decode_content=True)
    except (OSError, urllib3.exceptions.HTTPError) as error:
        raise OvphiError(f"cannot fetch {url} ({type(error).__name__})") from None


def read_local(source, max_bytes=None):
    """The bytes of a local image file (a regular file no larger than max_bytes, default MAX_BYTES)."""
    path, max_bytes = Path(source), max_bytes or MAX_BYTES
    try:
        if path.is_symlink() and not path.exists():
            raise OvphiError(f"image {source} is a link that leads nowhere (broken, or a loop)")
        if not path.exists():
            raise OvphiError(f"image {source} does not exist")
        if not path.is_file():
            raise OvphiError(f"image {source} is not a regular file")
        if path.stat().st_size > max_bytes:
            raise OvphiError(f"image {source} is larger than {max_bytes >> 20} MB")
        return path.read_bytes()
    except OSError as error:  # a symlink loop, no permission
        raise OvphiError(f"image {source} cannot be opened ({error.strerror or type(error).__name__})") from None


def to_rgb(image):
    """RGB as a viewer shows it: transparency over white, 16-bit and float samples scaled to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value / 256).convert("L")
    elif image.mode == "F":
        image = image.convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def decode(data, source):
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise OvphiError(f"image {source} has {image.width}x{image.height} pixels; at most"
                                 f" {MAX_PIXELS // 1_000_000} Mpx are read: scale it down")
            return to_rgb(image)
    except Image.DecompressionBombError:
        raise OvphiError(f"image {source} is too large (more than {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise OvphiError(f"image {source} cannot be read ({type(error).__name__}: corrupt, truncated or"
                         " not an image format PIL knows)") from None


def read_image(source):
    """RGB PIL image from a path or an http(s) URL; bad input raises OvphiError with one line."""
    source = str(source)
    scheme = urlparse(source).scheme
    if scheme in ("http", "https"):
        return decode(fetch(source), source)
    if scheme and len(scheme) > 1:
        raise OvphiError(f"{source}: only http(s) URLs and local paths are supported")
    return decode(read_local(source), source)


def read_frames(source, max_frames=8):
    """Up to max_frames evenly spaced frames of an animated GIF or of a folder of images (name order)."""
    if max_frames < 1:
        raise OvphiError("max_frames must be at least 1")
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
        if not files:
            raise OvphiError(f"{source} holds no images")
        return [read_image(p) for p in evenly_spaced(files, max_frames)]
    data = read_local(source)
    try:
        with Image.open(io.BytesIO(data)) as animation:
            frames = []
            for index in evenly_spaced(list(range(getattr(animation, "n_frames", 1))), max_frames):
                animation.seek(index)
                frames.append(to_rgb(animation))
            return frames
    except (UnidentifiedImageError, OSError, EOFError) as error:
        raise OvphiError(f"{source} cannot be read as an animation ({type(error).__name__})") from None


def evenly_spaced(items, count):
    """count items spread evenly from the first to the last (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]
