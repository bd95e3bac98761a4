"""Shared fixtures and helpers: the hub is offline, and the tiny checkpoint is built once per session."""
import os

for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[name] = "1"

import json
import shutil
import signal

import pytest
from PIL import Image, ImageDraw

from ovphi.convert import Recipe, convert
from ovphi.model.checkpoint import make_checkpoint


def converted_before(ir, key, out):
    """A copy of the IR folder `ir` at `out`, without its compiled cache, whose manifest lacks `key`: what a folder
    converted before ovphi wrote that fact looks like."""
    shutil.copytree(ir, out, ignore=shutil.ignore_patterns("model_cache"))
    manifest = json.loads((out / "ovphi_manifest.json").read_text())
    del manifest[key]
    (out / "ovphi_manifest.json").write_text(json.dumps(manifest))
    return out


def default_sigint():
    """preexec_fn for child processes that tests interrupt: a shell running the tests in the background
    ignores SIGINT, and children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    make_checkpoint("tiny", out)
    return out


@pytest.fixture(scope="session")
def int4_ir(tiny_dir, tmp_path_factory):
    """The default recipe (INT4 AWQ) calibrated on 8 builtin samples, with the static INT8 vision encoder
    whatever this CPU would choose."""
    out = tmp_path_factory.mktemp("ir") / "int4"
    convert(tiny_dir, out, Recipe(dataset="builtin", num_samples=8, vision="int8-static"))
    return out


@pytest.fixture(scope="session")
def fp32_ir(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ir") / "fp32"
    convert(tiny_dir, out, Recipe(weight_format="fp32", awq=False))
    return out


@pytest.fixture(scope="session")
def fp16_ir(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ir") / "fp16"
    convert(tiny_dir, out, Recipe(weight_format="fp16", awq=False))
    return out


def drawn_image(size, background, shape_colour):
    """A plain picture: one ellipse on a coloured background."""
    image = Image.new("RGB", size, background)
    width, height = size
    ImageDraw.Draw(image).ellipse((width // 6, height // 5, width // 2, height * 3 // 4), fill=shape_colour)
    return image


@pytest.fixture(scope="session")
def red_image():
    return drawn_image((640, 480), (200, 30, 30), (30, 200, 30))


@pytest.fixture(scope="session")
def blue_image():
    return drawn_image((480, 640), (30, 30, 200), (240, 240, 240))


@pytest.fixture(scope="session")
def square_images():
    """336x336 pictures: both backends' image preprocessing agree exactly on this size."""
    return [drawn_image((336, 336), (200, 30, 30), (30, 200, 30)),
            drawn_image((336, 336), (30, 30, 200), (240, 240, 240))]
