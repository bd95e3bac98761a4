"""Phi-3.5-vision image processor: HD resize and pad to 336-px crops, plus one global 336x336 view."""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .constants_phi3_v import CLIP_MEAN, CLIP_STD, CROP, TOKENS_PER_CROP, crop_grid, num_image_tokens


class Phi3VImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values", "image_sizes", "num_img_tokens"]

    def __init__(self, num_crops=1, image_mean=None, image_std=None, num_img_tokens=TOKENS_PER_CROP, do_convert_rgb=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_crops = num_crops
        self.image_mean = image_mean or CLIP_MEAN
        self.image_std = image_std or CLIP_STD
        self.num_img_tokens = num_img_tokens
        self.do_convert_rgb = do_convert_rgb

    def hd_image(self, image, num_crops):
        """Resize and pad one PIL image onto its crop grid -> normalised (3, rows*336, cols*336) tensor."""
        image = image.convert("RGB")
        cols, rows, new_w, new_h = crop_grid(image.width, image.height, num_crops)
        resized = image.resize((new_w, new_h), Image.BILINEAR)
        canvas = Image.new("RGB", (cols * CROP, rows * CROP), (255, 255, 255))
        canvas.paste(resized, ((cols * CROP - new_w) // 2, (rows * CROP - new_h) // 2))
        pixels = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.image_mean).view(3, 1, 1)
        std = torch.tensor(self.image_std).view(3, 1, 1)
        return (pixels - mean) / std

    def crops(self, hd):
        """(3, H, W) HD tensor -> (1 + crops, 3, 336, 336): the global view first, then crops row by row."""
        _, height, width = hd.shape
        rows, cols = height // CROP, width // CROP
        global_view = F.interpolate(hd[None], size=(CROP, CROP), mode="bicubic", align_corners=False)
        tiles = hd.reshape(3, rows, CROP, cols, CROP).permute(1, 3, 0, 2, 4).reshape(-1, 3, CROP, CROP)
        return torch.cat([global_view, tiles])

    def preprocess(self, images, num_crops=None, **kwargs):
        """PIL image(s) -> pixel_values (images, most crops + 1, 3, 336, 336), image_sizes, num_img_tokens."""
        if isinstance(images, Image.Image):
            images = [images]
        num_crops = num_crops or self.num_crops
        hd_images = [self.hd_image(image, num_crops) for image in images]
        crops = [self.crops(hd) for hd in hd_images]
        most = max(c.shape[0] for c in crops)
        pixel_values = torch.stack([F.pad(c, (0, 0, 0, 0, 0, 0, 0, most - c.shape[0])) for c in crops])
        image_sizes = torch.tensor([list(hd.shape[1:]) for hd in hd_images])
        tokens = [num_image_tokens(h // CROP, w // CROP, self.num_img_tokens) for h, w in image_sizes.tolist()]
        data = {"pixel_values": pixel_values, "image_sizes": image_sizes, "num_img_tokens": tokens}
        return BatchFeature(data=data)
