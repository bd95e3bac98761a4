"""Token ids -> text as they are generated, holding back an incomplete UTF-8 character (byte-fallback
tokens decode to U+FFFD until the character's last byte arrives)."""


class IncrementalText:
    """feed(ids) returns the text those ids add; finish() returns what was held back."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids = []
        self.prefix = self.read = 0  # decode from `prefix` so that a word's leading space survives

    def decode(self, start, end=None):
        return self.tokenizer.decode(self.ids[start:end], skip_special_tokens=True)

    def feed(self, ids):
        self.ids += ids
        before, after = self.decode(self.prefix, self.read), self.decode(self.prefix)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]

    def finish(self):
        before, after = self.decode(self.prefix, self.read), self.decode(self.prefix)
        self.prefix = self.read = len(self.ids)
        return after[len(before):]
