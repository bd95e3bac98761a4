"""The prefix cache: a new conversation about a picture seen before starts from a KV snapshot; pictures are
told apart by content, num_crops counts, and the cache stays within its bytes."""
import pytest
from exact import EXACT
from PIL import Image

from ovphi.images import image_digest
from ovphi.runtime import ChatSession, load
from ovphi.runtime.prefix_cache import PrefixCache, prefix_key
from ovphi.runtime.prompt import ImageSpan, Prompt


def test_keys_name_images_by_content_and_crops():
    red, other_red = Image.new("RGB", (64, 48), "red"), Image.new("RGB", (64, 48), "red")
    blue = Image.new("RGB", (64, 48), "blue")
    assert image_digest(red) == image_digest(other_red) != image_digest(blue)
    def prompt(picture):
        return Prompt([1, 5, -1, -1, -1, 7, 9], (ImageSpan(2, 5, 1, image_digest(picture), 5),))

    key = prefix_key(prompt(red), 6, 4)
    assert key == (4, 1, 5, (image_digest(red), 3), 7) == prefix_key(prompt(other_red), 6, 4)
    assert key != prefix_key(prompt(blue), 6, 4) and key != prefix_key(prompt(red), 6, 16)


def test_the_cache_keeps_the_most_recent_within_its_bytes():
    cache = PrefixCache(max_bytes=100)
    cache.put("a", "A", 60)
    cache.put("b", "B", 30)
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C", 40)  # 130 > 100: b, the least recent, goes
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, "A", "C") and cache.bytes == 100
    cache.put("huge", "H", 101)  # larger than the whole cache: not kept, nothing evicted
    assert cache.get("huge") is None and cache.bytes == 100
    assert (cache.hits, cache.misses) == (3, 2)


@pytest.fixture(scope="module")
def engine(fp32_ir):
    return load(fp32_ir, cache=False, **EXACT)


def ask(engine, image, question="Describe the image.", **settings):
    chat = ChatSession(engine, max_new_tokens=8, **settings)
    return list(chat.ask(question, [image]))[-1]


def test_a_new_conversation_about_the_same_picture_starts_from_its_snapshot(engine, red_image):
    cold = ask(engine, red_image)
    warm = ask(engine, red_image.copy())  # another object, the same content
    assert (cold.timings.prefix_cache, warm.timings.prefix_cache) == ("miss", "hit")
    assert warm.timings.processed_tokens < 20 and warm.timings.vision_s == 0.0
    assert warm.token_ids == cold.token_ids  # the snapshot holds what a prefill computes
    assert ask(engine, red_image, "What is red here?").timings.prefix_cache == "hit"  # another question: still


def test_other_pixels_or_other_crops_miss(engine, red_image):
    ask(engine, red_image)
    changed = red_image.copy()
    changed.putpixel((0, 0), (0, 0, 0))  # same size, same token count: only the content differs
    assert ask(engine, changed).timings.prefix_cache == "miss"
    assert ask(engine, red_image, num_crops=1).timings.prefix_cache == "miss"


def test_a_prefix_cache_of_zero_bytes_is_off(fp32_ir, red_image):
    engine = load(fp32_ir, cache=False, prefix_cache_mb=0, **EXACT)
    assert [ask(engine, red_image).timings.prefix_cache for _ in range(2)] == [None, None]


def test_another_picture_at_the_same_place_is_never_taken_for_the_cached_one(fp32_ir, red_image, blue_image):
    """Two conversations in a row on one engine (a server's two clients): same template, same token count, other
    pixels. The second must be computed, and answer as it would alone."""
    from ovphi.runtime import Conversation, GenerationConfig, ImagePart

    engine = load(fp32_ir, cache=False, prefix_cache_mb=0, **EXACT)
    other = blue_image.resize(red_image.size)

    def alone(image):
        fresh = load(fp32_ir, cache=False, prefix_cache_mb=0, **EXACT)
        return ask(fresh, image)

    def after_another(first, second):
        for image in (first, second):
            talk = Conversation()
            talk.add("user", ImagePart(image), "Describe the image.")
            result = list(engine.stream(talk, GenerationConfig(max_new_tokens=8)))[-1]
        return result

    second = after_another(red_image, other)
    assert second.timings.processed_tokens > 757  # the other picture was encoded and read, not taken from the cache
    assert second.token_ids == alone(other).token_ids
