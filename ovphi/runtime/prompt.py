"""The one prompt builder: a Conversation -> the token ids the language model reads.

The folder's chat template lays out the turns (`<|user|>\\n...<|end|>\\n<|assistant|>\\n`). Each image
becomes its token count of the id -N (N numbered over the conversation from 1; the engine puts the
image's features there), followed by "\\n", as Phi-3.5-vision's processor does, and every text chunk
after an image starts with <s> as there. A user's text is text: a control-token string in it
(`<|end|>`, `<|assistant|>`, `<|image_1|>`) is encoded as the characters it is, never as a token or an
image. An assistant message that keeps its generated ids is fed back as those ids.
"""
import re
from dataclasses import dataclass

from ..errors import OvphiError
from ..model.constants_phi3_v import crop_count
from .conversation import ImagePart

MARKER = "\ue000{}\ue001"  # private-use characters around a message number, swapped for its content
MARKERS = re.compile("\ue000(\\d+)\ue001")
IMAGE_TAG = "<|image_{}|>"
CONTROL_TEXT = re.compile(r"<\|[a-z_0-9]+\|>|</?s>")  # what a runtime with its own template reads as tokens


def segments(tokenizer, messages, add_generation_prompt=True):
    """The prompt as ("template", text), ("text", user text), ("image", N) and ("ids", list) pieces."""
    rendered = tokenizer.apply_chat_template(
        [{"role": m.role, "content": MARKER.format(i)} for i, m in enumerate(messages)],
        add_generation_prompt=add_generation_prompt, tokenize=False)
    pieces, number = [], 0
    for index, piece in enumerate(MARKERS.split(rendered)):
        if index % 2 == 0:
            pieces.append(("template", piece))
            continue
        message = messages[int(piece)]
        if message.token_ids is not None:
            pieces.append(("ids", list(message.token_ids)))
            continue
        for part in message.parts:
            if isinstance(part, ImagePart):
                number += 1
                pieces += [("image", number), ("template", "\n")]
            else:
                pieces.append(("text", part))
    return pieces


def encode_run(tokenizer, run, bos):
    """Ids of consecutive template and user-text pieces. When no user text holds a special-token string
    the run is encoded in one piece (the ids a plain tokenizer call gives); else piece by piece, with
    the tokenizer's special tokens split in the user's text so that they stay text."""
    specials = tokenizer.added_tokens_encoder
    if not any(kind == "text" and any(s in text for s in specials) for kind, text in run):
        return tokenizer("".join(text for _, text in run), add_special_tokens=bos).input_ids
    ids = [tokenizer.bos_token_id] if bos else []
    for kind, text in run:
        ids += tokenizer(text, add_special_tokens=False, split_special_tokens=kind == "text").input_ids
    return ids


def common_prefix(a, b):
    """How many leading items two sequences share."""
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


@dataclass(frozen=True)
class ImageSpan:
    """Image `number` (numbered over the conversation from 1) at positions start..end-1 of a prompt's ids;
    `digest` names its picture's content, `crops` how many CLIP crops encode it."""

    start: int
    end: int
    number: int
    digest: str
    crops: int


@dataclass(frozen=True)
class Prompt:
    """A prompt's token ids (an image's positions hold -number) and where each image lies in them: whatever
    reuses a KV prefix, keys a snapshot or encodes images reads `images`."""

    ids: list
    images: tuple = ()

    def extended(self, ids):
        """This prompt with more text ids after it (an answer to score)."""
        return Prompt(self.ids + list(ids), self.images)

    @property
    def positions(self):
        """What a KV cache holds at each position: the token id, or the digest of the picture there."""
        held = list(self.ids)
        for span in self.images:
            held[span.start:span.end] = [span.digest] * (span.end - span.start)
        return held

    @property
    def images_end(self):
        """The position after the last image (0 without images)."""
        return self.images[-1].end if self.images else 0

    def whole_images(self, length):
        """`length`, moved back to the start of an image it would split: an image is cached or encoded whole."""
        return next((span.start for span in self.images if span.start < length < span.end), length)

    def images_from(self, position):
        """The images at or after `position`: those a prefill from there encodes."""
        return [span for span in self.images if span.start >= position]


def build_prompt(tokenizer, conversation, image_inputs):
    """The Prompt of a conversation whose pictures the image processor made `image_inputs` of."""
    tokens = image_inputs.get("num_img_tokens", [])
    ids, placed = prompt_spans(tokenizer, conversation.messages, tokens)
    sizes = image_inputs["image_sizes"].tolist() if tokens else []
    digests = [part.digest for part in conversation.images]
    return Prompt(ids, tuple(ImageSpan(start, end, number, digests[number - 1], crop_count(*sizes[number - 1]))
                             for start, end, number in placed))


def prompt_ids(tokenizer, messages, tokens_per_image, add_generation_prompt=True):
    """Token ids of the conversation, image N's positions holding -N (tokens_per_image[N - 1] of them)."""
    return prompt_spans(tokenizer, messages, tokens_per_image, add_generation_prompt)[0]


def prompt_spans(tokenizer, messages, tokens_per_image, add_generation_prompt=True):
    """(the prompt's ids, (start, end, N) of each image's positions)."""
    ids, run, bos, placed = [], [], True, []

    def flush():
        nonlocal bos
        if run:
            ids.extend(encode_run(tokenizer, run, bos))
            run.clear()
            bos = False

    for kind, value in segments(tokenizer, messages, add_generation_prompt):
        if kind == "image":
            flush()
            if value > len(tokens_per_image):
                raise OvphiError(f"the conversation has image {value} but {len(tokens_per_image)} were processed")
            placed.append((len(ids), len(ids) + tokens_per_image[value - 1], value))
            ids += [-value] * tokens_per_image[value - 1]
            bos = True  # Phi-3-vision starts every text chunk after an image with <s>
        elif kind == "ids":
            flush()
            ids += value
        else:
            run.append((kind, value))
    flush()
    return ids, placed


def tagged_messages(messages):
    """The messages as {"role", "content"} dicts with `<|image_N|>` tags, numbered over the conversation."""
    rendered, number = [], 1
    for message in messages:
        rendered.append({"role": message.role, "content": tagged_text(message, number)})
        number += len(message.images)
    return rendered


def tagged_text(message, first_number):
    """A message as text with `<|image_N|>` tags (images numbered from first_number), for a runtime that
    applies the template itself (openvino.genai). Refuses user text that such a runtime would read as
    a control token or an image tag."""
    texts, number = [], first_number
    for part in message.parts:
        if isinstance(part, ImagePart):
            texts.append(IMAGE_TAG.format(number) + "\n")
            number += 1
        elif CONTROL_TEXT.search(part):
            raise OvphiError("this engine would read the control-token text in the prompt (such as <|end|> or"
                             " <|image_1|>) as a token: use --backend optimum, which keeps it literal, or"
                             " remove it (ovphi places image tags itself)")
        else:
            texts.append(part)
    return "".join(texts)
