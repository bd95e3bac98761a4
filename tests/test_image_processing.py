"""The HD transform: crop grids, token counts (FACTS.md formula) and tensor shapes."""
import pytest
from PIL import Image

from ovphi.model.image_processing_phi3_v import Phi3VImageProcessor, crop_grid


def formula(rows, cols):
    return (rows * cols + 1) * 144 + 1 + (rows + 1) * 12


@pytest.mark.parametrize("num_crops", [1, 4, 16])
@pytest.mark.parametrize("size", [(640, 480), (480, 640), (336, 336), (1920, 1080), (100, 900), (2000, 300)])
def test_token_count_and_shapes_follow_the_crop_grid(size, num_crops):
    processor = Phi3VImageProcessor(num_crops=num_crops)
    out = processor(Image.new("RGB", size, (10, 20, 30)))
    height, width = out["image_sizes"][0].tolist()
    rows, cols = height // 336, width // 336
    assert height % 336 == 0 and width % 336 == 0 and rows * cols <= num_crops
    assert out["num_img_tokens"] == [formula(rows, cols)]
    assert tuple(out["pixel_values"].shape) == (1, rows * cols + 1, 3, 336, 336)


def test_photo_4_3_at_4_crops_is_2x2_and_757_tokens():
    assert crop_grid(640, 480, 4)[:2] == (2, 2)
    assert Phi3VImageProcessor(num_crops=4)(Image.new("RGB", (640, 480)))["num_img_tokens"] == [757]


def test_several_images_pad_to_the_largest_crop_count():
    processor = Phi3VImageProcessor(num_crops=16)
    out = processor([Image.new("RGB", (336, 336)), Image.new("RGB", (1600, 1200))])
    sizes = out["image_sizes"].tolist()
    crops = [h // 336 * (w // 336) + 1 for h, w in sizes]
    assert out["pixel_values"].shape[1] == max(crops)
    assert out["pixel_values"][0, crops[0]:].abs().sum() == 0  # the smaller image is zero-padded
