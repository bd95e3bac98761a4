"""The one image reader: paths and URLs under one set of limits, frames, and modes converted as a viewer shows them."""
import http.server
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ovphi import images
from ovphi.errors import OvphiError
from ovphi.images import read_frames, read_image


def bomb_png(path):
    """A PNG header claiming 30000 x 30000 pixels (no pixel data): PIL refuses it as a decompression bomb."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def test_frames_of_a_gif_are_evenly_spaced(tmp_path):
    shades = list(range(0, 250, 25))  # ten frames, each its own grey
    frames = [Image.new("RGB", (64, 48), (shade, shade, shade)) for shade in shades]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    picked = read_frames(tmp_path / "clip.gif", max_frames=4)
    assert [frame.getpixel((0, 0))[0] for frame in picked] == [shades[i] for i in (0, 3, 6, 9)]
    assert len(read_frames(tmp_path / "clip.gif", max_frames=20)) == 10


def test_local_files_that_are_not_images_fail_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(OvphiError, match="too large"):
        read_image(bomb_png(tmp_path / "bomb.png"))
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(OvphiError, match="cannot be read"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(OvphiError, match="not a regular file"):
        read_image(tmp_path)
    with pytest.raises(OvphiError, match="not a regular file"):
        read_image("/dev/null")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(OvphiError, match="leads nowhere"):
        read_image(tmp_path / "loop")
    monkeypatch.setattr(images, "MAX_BYTES", 10)
    with pytest.raises(OvphiError, match="larger than"):
        read_image(tmp_path / "notes.txt")  # refused by its size, before it is read


def test_16_bit_and_transparent_images_look_as_a_viewer_shows_them(tmp_path):
    grey16 = Image.fromarray(np.full((20, 30), 32768, dtype=np.uint16))
    grey16.save(tmp_path / "grey16.png")
    assert read_image(tmp_path / "grey16.png").getpixel((0, 0)) == (128, 128, 128)
    transparent = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    transparent.putpixel((5, 5), (255, 0, 0, 255))
    transparent.save(tmp_path / "alpha.png")
    picture = read_image(tmp_path / "alpha.png")
    assert picture.getpixel((0, 0)) == (255, 255, 255) and picture.getpixel((5, 5)) == (255, 0, 0)


class Slow(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/drip":
            return super().do_GET()
        self.send_response(200)
        self.end_headers()
        for _ in range(40):
            self.wfile.write(b"x" * 100)
            self.wfile.flush()
            time.sleep(0.1)


def test_urls_are_fetched_within_a_size_and_a_time_limit(tmp_path, red_image, monkeypatch):
    red_image.save(tmp_path / "red.png")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Slow(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert read_image(f"{base}/red.png").size == red_image.size
        with pytest.raises(OvphiError, match="cannot fetch"):
            read_image(f"{base}/missing.png")
        monkeypatch.setattr(images, "DOWNLOAD_SECONDS", 1.0)
        started = time.monotonic()
        with pytest.raises(OvphiError, match="longer than 1 s"):
            images.fetch(f"{base}/drip", seconds=1.0)  # each read is quick; the whole is not
        assert time.monotonic() - started < 3
        with pytest.raises(OvphiError, match="larger than"):
            images.fetch(f"{base}/red.png", max_bytes=100)
        with pytest.raises(OvphiError, match="only http"):
            read_image("ftp://127.0.0.1/x.png")
    finally:
        server.shutdown()


def test_a_picture_too_large_to_decode_is_refused_from_its_header(tmp_path):
    """81 Mpx in a small PNG: refused from the size its header gives, before 243 MB of pixels are decoded."""
    from PIL import Image

    Image.new("RGB", (9000, 9000), "white").save(tmp_path / "big.png")
    with pytest.raises(OvphiError, match="9000x9000 pixels; at most 50 Mpx"):
        read_image(tmp_path / "big.png")
