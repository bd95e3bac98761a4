"""Snapshots of the KV cache after a prompt's images, kept for a new conversation about the same images
(a /reset then the same picture, a batch of questions about one image, a server's next request): an LRU
bounded in bytes, keyed by the prompt up to the last image with each image named by its content's hash."""
from collections import OrderedDict


def prefix_key(prompt, end, num_crops):
    """The prompt's first `end` positions, each image's run of positions as its picture's digest and length."""
    key, position = [num_crops], 0
    for span in prompt.images:
        if span.start >= end:
            break
        key += prompt.ids[position:span.start]
        key.append((span.digest, span.end - span.start))
        position = span.end
    return tuple(key + prompt.ids[position:end])


class PrefixCache:
    """Least-recently-used snapshots, at most max_bytes in all (0 keeps none); counts hits and misses."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.entries = OrderedDict()  # key -> (snapshot, bytes)
        self.bytes = self.hits = self.misses = 0

    def get(self, key):
        if key not in self.entries:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return self.entries[key][0]

    def put(self, key, snapshot, size):
        if size > self.max_bytes or key in self.entries:
            return
        while self.bytes + size > self.max_bytes:
            _, (_, evicted) = self.entries.popitem(last=False)
            self.bytes -= evicted
        self.entries[key] = (snapshot, size)
        self.bytes += size
