"""A conversation as structured messages: each message holds content parts (text and images), and an
assistant message keeps the token ids the model generated, so that the next turn feeds the model
exactly what it said instead of a re-tokenization of the text."""
from dataclasses import dataclass, field
from functools import cached_property

from PIL import Image

from ..images import image_digest


@dataclass(frozen=True)
class ImagePart:
    image: Image.Image
    source: str | None = None  # path or URL, for transcripts

    @cached_property
    def digest(self):
        """The picture's content hash, computed once: every later turn of the conversation compares by it."""
        return image_digest(self.image)


@dataclass
class Message:
    role: str  # "system", "user" or "assistant"
    parts: list = field(default_factory=list)  # str and ImagePart, in order
    token_ids: list | None = None  # an assistant message as generated (without the stop token)

    @property
    def text(self):
        return "".join(part for part in self.parts if isinstance(part, str))

    @property
    def images(self):
        return [part for part in self.parts if isinstance(part, ImagePart)]


@dataclass
class Conversation:
    messages: list = field(default_factory=list)

    def add(self, role, *parts, token_ids=None):
        self.messages.append(Message(role, list(parts), token_ids))
        return self.messages[-1]

    @property
    def images(self):
        """Every image of the conversation, in order: image N of the prompt is images[N - 1]."""
        return [part for message in self.messages for part in message.images]

    def as_json(self):
        """JSON-ready messages: text parts and numbered images with their source."""
        number, messages = 0, []
        for message in self.messages:
            content = []
            for part in message.parts:
                if isinstance(part, ImagePart):
                    number += 1
                    content.append({"type": "image", "number": number, "source": part.source})
                else:
                    content.append({"type": "text", "text": part})
            messages.append({"role": message.role, "content": content})
        return messages
