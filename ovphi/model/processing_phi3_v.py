"""Phi-3.5-vision processor: images through the image processor, `<|image_N|>` tags expanded to -N ids."""
import re

import torch
from transformers import BatchFeature, ProcessorMixin

IMAGE_TAG = re.compile(r"<\|image_(\d+)\|>")


class Phi3VProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = "AutoTokenizer"

    def __init__(self, image_processor, tokenizer, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    def __call__(self, text=None, images=None, num_crops=None, return_tensors="pt", **kwargs):
        """One prompt with `<|image_1|>`, `<|image_2|>`, ... tags -> input_ids, attention_mask and image inputs."""
        if isinstance(text, list):
            if len(text) != 1:
                raise ValueError("the Phi-3.5-vision processor takes one prompt at a time")
            text = text[0]
        if images is not None and not isinstance(images, (list, tuple)):
            images = [images]
        image_inputs = self.image_processor(images, num_crops=num_crops) if images else {}
        tokens_per_image = image_inputs.get("num_img_tokens", [])
        ids = self.expand_image_tags(text, tokens_per_image)
        data = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        if images:
            data["pixel_values"] = image_inputs["pixel_values"]
            data["image_sizes"] = image_inputs["image_sizes"]
        return BatchFeature(data=data)

    def expand_image_tags(self, text, tokens_per_image):
        """Token ids of text where each `<|image_N|>` becomes tokens_per_image[N-1] copies of -N."""
        numbers = [int(n) for n in IMAGE_TAG.findall(text)]
        if sorted(numbers) != list(range(1, len(tokens_per_image) + 1)):
            raise ValueError(
                f"the prompt has image tags {numbers or 'none'} for {len(tokens_per_image)} image(s);"
                f" expected <|image_1|> to <|image_{len(tokens_per_image)}|> once each"
            )
        chunks = IMAGE_TAG.split(text)  # text, number, text, number, ..., text
        ids = self.tokenizer(chunks[0]).input_ids
        for number, chunk in zip(chunks[1::2], chunks[2::2]):
            ids += [-int(number)] * tokens_per_image[int(number) - 1]
            ids += self.tokenizer(chunk).input_ids  # Phi-3-vision starts every text chunk with <s>
        return ids

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)
