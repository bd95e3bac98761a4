"""A conversation about images: history, numbered image tags, and turns streamed by either backend."""
from ..errors import OvphiError


class ChatSession:
    """Turns of one conversation. `ask` streams the answer and keeps it in the history, even when the
    caller stops early; images attached to a turn are numbered over the whole conversation."""

    def __init__(self, vlm, num_crops=None, **generation):
        self.vlm = vlm
        self.num_crops = num_crops
        self.generation = generation
        self.reset()

    def reset(self):
        self.messages, self.images, self.image_sources, self.pending = [], [], [], []
        self.vlm.reset()

    def attach(self, image, source=None):
        """Add an image to the next turn."""
        self.pending.append((image, source))

    def ask(self, text, images=()):
        """An iterator over the answer to `text` (with the attached and given images), piece by piece."""
        if not text or not text.strip():
            raise OvphiError("the prompt is empty")
        return self._turn(text, images)

    def _turn(self, text, images):
        new = self.pending + [(image, None) for image in images]
        self.pending = []
        first = len(self.images) + 1
        tags = "".join(f"<|image_{n}|>\n" for n in range(first, first + len(new)))
        self.messages.append({"role": "user", "content": tags + text})
        self.images += [image for image, _ in new]
        self.image_sources += [source for _, source in new]
        pieces = []
        try:
            for piece in self.vlm.stream_turn(self.messages, self.images, self.num_crops, **self.generation):
                pieces.append(piece)
                yield piece
        except Exception:
            if not pieces:  # nothing was said: the turn did not happen
                self.messages.pop()
                del self.images[first - 1:], self.image_sources[first - 1:]
            raise
        finally:
            if pieces:
                self.messages.append({"role": "assistant", "content": "".join(pieces).strip()})

    @property
    def last_timings(self):
        return self.vlm.last_timings

    def transcript(self):
        """The conversation as JSON-ready data."""
        return {"backend": self.vlm.backend, "device": self.vlm.device, "messages": self.messages,
                "images": self.image_sources}
