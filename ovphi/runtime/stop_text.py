"""Stop strings (GenerationConfig.stop), for every engine: the answer's Chunks pass through StopText, which holds
back text that may begin a stop string and cuts the answer at the first one; the turn's TurnResult is then cut
to match."""
from dataclasses import replace

from .events import Chunk


class StopText:
    """add(chunk) returns what of it can be passed on now (None: nothing), rest() what was held back at the end,
    cut(result) the TurnResult of the answer up to the first stop string."""

    def __init__(self, stops):
        self.stops = [stop for stop in stops if stop]
        self.text, self.sent, self.hit = "", 0, False
        self.pieces = []  # (where its text starts in self.text, where it ends, its chunk) of each chunk added
        self.pending = []  # (where its text starts, TokenLogprob) of the tokens whose text is not yet sent

    def add(self, chunk):
        if not self.stops:
            return chunk
        if self.hit:  # tokens generated before the engine saw the stop: not the answer's
            return None
        start = len(self.text)
        self.text += chunk.text
        self.pieces.append((start, len(self.text), chunk))
        self.pending += [(start, entry) for entry in chunk.logprobs]
        for stop in self.stops:
            if stop in self.text:
                self.text, self.hit = self.text[:self.text.index(stop)], True
        hold = 0 if self.hit else max((len(stop) - 1 for stop in self.stops), default=0)
        return self.passed(chunk, max(self.sent, len(self.text) - hold))

    def rest(self, time_s):
        """A Chunk of the text still held back when the answer ended (None: none)."""
        return self.passed(Chunk("", [], time_s), len(self.text) if self.hit else float("inf"))

    def passed(self, chunk, end):
        """The chunk with the text up to `end` not yet sent, and the TokenLogprobs of the tokens it begins."""
        text = self.text[self.sent:min(end, len(self.text))]
        self.sent += len(text)
        logprobs = tuple(entry for start, entry in self.pending if start < end)
        self.pending = [(start, entry) for start, entry in self.pending if start >= end]
        if not text and not logprobs and not chunk.token_ids:
            return None
        return replace(chunk, text=text, logprobs=logprobs)

    def cut(self, result):
        """The TurnResult of the answer up to the first stop string: finish reason stop, the whole tokens before
        the cut (None when the cut falls inside a token: then the text alone is the answer's record)."""
        if not self.hit:
            return result
        cut = len(self.text)
        straddles = any(start < cut < end for start, end, _ in self.pieces)
        kept = [token for start, end, chunk in self.pieces if end <= cut and start < cut for token in chunk.token_ids]
        return replace(result, answer=self.text.strip(), token_ids=None if straddles else kept, finish_reason="stop")


class StopCut:
    """A turn's events passed on to `emit` cut at the first of `stops`: call it with each event; `on_hit()` is
    called once a stop string is seen (to end the generation); end(result) emits the text held back and returns
    the TurnResult cut to match."""

    def __init__(self, stops, emit, on_hit):
        self.stop_text, self.emit, self.on_hit = StopText(stops), emit, on_hit

    def __call__(self, event):
        if isinstance(event, Chunk):
            event = self.stop_text.add(event)
            if self.stop_text.hit:
                self.on_hit()
        if event is not None:
            self.emit(event)

    def end(self, result):
        held = self.stop_text.rest(result.timings.total_s)
        if held:
            self.emit(held)
        return self.stop_text.cut(result)
