"""A conversation about images with one engine: structured history, streamed turns."""
from dataclasses import replace

from ..errors import OvphiError
from .config import GenerationConfig
from .conversation import Conversation, ImagePart
from .engine import TurnResult


class ChatSession:
    """Turns of one conversation. `ask` streams the answer's Chunks, then its TurnResult, and keeps the
    answer in the history (as the token ids the model generated), also when the caller stops early."""

    def __init__(self, engine, generation=None, **settings):
        self.engine = engine
        self.generation = replace(generation or GenerationConfig(), **settings)
        self.reset()

    def reset(self):
        self.conversation = Conversation()
        self.pending = []
        self.engine.reset()

    def attach(self, image, source=None):
        """Add an image to the next turn."""
        self.pending.append(ImagePart(image, source))

    @property
    def images(self):
        return self.conversation.images + self.pending

    def ask(self, text, images=()):
        """Iterator over the answer to `text` (with the attached and given images): Chunks, then the
        TurnResult. Images come before the text, as Phi-3.5-vision expects."""
        if not isinstance(text, str) or not text.strip():
            raise OvphiError("the prompt is empty")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes that were not UTF-8, smuggled in as surrogates (a shell's argv)
            raise OvphiError("the prompt is not valid UTF-8 text") from None
        parts = self.pending + [ImagePart(image) for image in images] + [text]
        self.pending = []
        return self._turn(parts)

    def _turn(self, parts):
        self.conversation.add("user", *parts)
        chunks, result = [], None
        try:
            for event in self.engine.stream(self.conversation, self.generation):
                if isinstance(event, TurnResult):
                    result = event
                else:
                    chunks.append(event)
                yield event
        except Exception:
            if not chunks:  # nothing was said: the turn did not happen
                self.conversation.messages.pop()
            raise
        finally:
            if result is not None:
                self.conversation.add("assistant", result.answer, token_ids=result.token_ids)
            elif chunks:  # stopped early: keep the text that was shown
                self.conversation.add("assistant", "".join(chunk.text for chunk in chunks).strip())

    def transcript(self):
        """The conversation as JSON-ready data."""
        return {"backend": self.engine.name, "device": self.engine.device, "messages": self.conversation.as_json()}
