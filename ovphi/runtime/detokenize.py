"""Token ids -> text as they are generated, holding back an incomplete UTF-8 character (byte-fallback
tokens decode to U+FFFD until the character's last byte arrives); one token's own text and bytes."""
import re
from functools import lru_cache

BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # a SentencePiece byte-fallback token


@lru_cache(maxsize=8)
def special_ids(tokenizer):
    """The ids of the tokens that a decode skipping special tokens leaves out."""
    return frozenset(i for i, token in tokenizer.added_tokens_decoder.items() if token.special)


def token_parts(tokenizer, token_id):
    """(text, UTF-8 bytes) of one token: its word-start mark as a space, a byte-fallback token's one byte (its text
    backslash-escaped where it is not a whole character); a special token's name and None, as it adds no text."""
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if token_id in special_ids(tokenizer):
        return piece, None
    byte = BYTE_TOKEN.fullmatch(piece)
    data = bytes([int(byte[1], 16)]) if byte else piece.replace("\u2581", " ").encode()
    return data.decode("utf-8", "backslashreplace"), data


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
