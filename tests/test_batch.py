"""The genai-batch engine (continuous batching on ContinuousBatchingPipeline, in a worker process): requests that
run at once, each answered as it would be alone; pictures told apart by content; a request's cancel and stop
string end it alone; a real server stays responsive while a request's pictures are encoded."""
import re
import threading
import time
from dataclasses import replace

import pytest
import requests
from exact import EXACT
from PIL import Image
from served import Served, data_url

from ovphi.errors import OvphiError, PromptTooLong
from ovphi.runtime import Chunk, Conversation, GenerationConfig, ImagePart, Status, load
from ovphi.runtime.scheduler import Busy

LONG = GenerationConfig(max_new_tokens=40, ignore_eos=True)


def question(text, *images):
    conversation = Conversation()
    conversation.add("user", *[ImagePart(image) for image in images], text)
    return conversation


@pytest.fixture
def batch_engine(fp32_ir):
    engines = []

    def start(**options):
        engines.append(load(fp32_ir, backend="genai-batch", cache=False, **EXACT, **options))
        return engines[-1]

    yield start
    for engine in engines:
        engine.close()


def test_concurrent_requests_overlap_and_each_is_answered_as_alone(batch_engine, square_images):
    """Three requests and a fourth that is cancelled mid-stream run together; the three equal their answers
    alone, token for token."""
    engine = batch_engine()
    green = Image.new("RGB", square_images[0].size, (20, 160, 40))
    questions = [question("Describe the image.", image) for image in (*square_images, green)]
    handles = [engine.submit(conversation, LONG) for conversation in questions]
    leaving = engine.submit(question("Describe the image.", green), GenerationConfig(max_new_tokens=4000,
                                                                                    ignore_eos=True))
    first_token, ended = {}, {}

    def read(number, handle):
        for event in handle:
            if isinstance(event, Chunk) and event.token_ids and number not in first_token:
                first_token[number] = time.perf_counter()
        ended[number] = time.perf_counter()

    readers = [threading.Thread(target=read, args=item) for item in enumerate(handles)]
    for reader in readers:
        reader.start()
    next(event for event in leaving if isinstance(event, Chunk) and event.token_ids)
    leaving.cancel()  # mid-stream, with others running: it ends at the next step, the others go on unchanged
    for reader in readers:
        reader.join(120)
    assert len(first_token) == 3 and max(first_token.values()) < min(ended.values())  # they ran together
    left = leaving.result()
    assert left.finish_reason == "cancelled" and 0 < len(left.token_ids) < 4000
    batched = [handle.result() for handle in handles]
    assert all(result.finish_reason == "length" and len(result.token_ids) == 40 for result in batched)
    alone = [engine.complete(conversation, LONG) for conversation in questions]
    assert [result.token_ids for result in batched] == [result.token_ids for result in alone]
    assert len({tuple(result.token_ids) for result in alone}) == 3  # three pictures, three answers


def test_another_picture_of_the_same_size_and_words_gets_its_own_answer(batch_engine, square_images):
    """genai's prefix cache hashes a picture's content into its blocks: the blue picture after the red one is
    answered as by a fresh engine; a later turn about the red one (earlier turns with pictures, which the genai
    engine refuses) too, and its picture is encoded again (vision time reported)."""
    red, blue = square_images
    engine = batch_engine()
    first = engine.complete(question("Describe the image.", red), LONG)
    after_red = engine.complete(question("Describe the image.", blue), LONG)
    follow_up = question("Describe the image.", red)
    follow_up.add("assistant", first.answer)
    follow_up.add("user", "And the colours?")
    later = engine.complete(follow_up, LONG)
    fresh = batch_engine()
    assert after_red.token_ids == fresh.complete(question("Describe the image.", blue), LONG).token_ids
    assert after_red.token_ids != first.token_ids
    assert later.token_ids == fresh.complete(follow_up, LONG).token_ids
    assert later.timings.vision_s > 0 and later.timings.prompt_tokens > first.timings.prompt_tokens


def test_a_cancel_or_a_stop_string_ends_its_own_request_and_frees_the_slot(batch_engine, square_images):
    engine = batch_engine(slots=1)
    endless = engine.submit(question("Describe the image.", square_images[0]),
                            GenerationConfig(max_new_tokens=4000, ignore_eos=True))
    waiting = engine.submit(question("Describe the image.", square_images[1]), LONG)
    with pytest.raises(Busy):
        engine.scheduler.submit(question("Hi"), LONG, max_waiting=1)
    next(event for event in endless if isinstance(event, Chunk) and event.token_ids)
    asked = time.perf_counter()
    endless.cancel()
    stopped = endless.result()
    assert time.perf_counter() - asked < 1.0
    assert stopped.finish_reason == "cancelled" and 0 < len(stopped.token_ids) < 4000
    answered = waiting.result()
    assert answered.finish_reason == "length"
    assert answered.token_ids == engine.complete(question("Describe the image.", square_images[1]), LONG).token_ids
    stop = answered.answer[len(answered.answer) // 2:][:3]
    cut = engine.complete(question("Describe the image.", square_images[1]), replace(LONG, stop=(stop,)))
    assert cut.finish_reason == "stop" and cut.answer == answered.answer[:answered.answer.index(stop)].strip()


def test_what_genai_cannot_do_is_refused_before_any_work(batch_engine, square_images):
    engine = batch_engine()
    with pytest.raises(OvphiError, match="num_crops"):
        engine.submit(question("Hi", square_images[0]), GenerationConfig(num_crops=2))
    with pytest.raises(OvphiError, match="#4405"):
        engine.submit(question("Hi", square_images[0]), GenerationConfig(repetition_penalty=1.2))
    with pytest.raises(OvphiError, match="the context holds"):
        engine.submit(question("word " * 140_000), LONG)


def test_the_server_answers_health_while_pictures_are_encoded_and_refuses_past_its_queue(int4_ir, red_image):
    server = Served(int4_ir, "--backend", "genai-batch", "--slots", "1", "--max-queue", "1")
    try:
        client, model = server.client(), server.client().models.list().data[0].id
        big = [Image.new("RGB", (1344, 1344), (40 * n, 90, 200 - 20 * n)) for n in range(8)]  # 8 x 17 crops
        body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(image)}} for image in big]
            + [{"type": "text", "text": "Describe them."}]}]}
        results = {}
        encoding = threading.Thread(target=lambda: results.update(big=server.post(body)))
        encoding.start()
        time.sleep(1.0)  # the worker is encoding
        queued = threading.Thread(target=lambda: results.update(queued=server.post(body | {"messages": [
            {"role": "user", "content": "Hi"}]})))
        queued.start()
        time.sleep(0.5)
        refused = server.post(body | {"messages": [{"role": "user", "content": "Hi"}]})
        busy = requests.get(f"{server.base}/metrics", timeout=5).text
        waits = []
        while encoding.is_alive() and len(waits) < 200:
            asked = time.perf_counter()
            assert requests.get(f"{server.base}/health", timeout=5).status_code == 200
            waits.append(time.perf_counter() - asked)
            time.sleep(0.05)
        encoding.join(120)
        queued.join(120)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert len(waits) >= 5 and max(waits) < 0.5, waits
        assert results["big"].status_code == 200 and results["queued"].status_code == 200
        first = client.chat.completions.create(model=model, max_tokens=8, temperature=0, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(red_image)}},
                                         {"type": "text", "text": "Describe the image."}]}])
        second = client.chat.completions.create(model=model, max_tokens=8, temperature=0, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(red_image)}},
                                         {"type": "text", "text": "Describe the image."}]},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "And the colours?"}])
        assert second.usage.prompt_tokens > first.usage.prompt_tokens and second.choices[0].finish_reason
        assert second.usage.prompt_tokens_details is None  # genai does not say what came from its prefix cache
        assert "ovphi_running_requests 1\n" in busy and "ovphi_queue_depth 1\n" in busy, busy
        idle = requests.get(f"{server.base}/metrics", timeout=5).text
        assert "ovphi_running_requests 0\n" in idle and "ovphi_queue_depth 0\n" in idle
        assert 'ovphi_prompt_tokens_total{kind="processed"} 0\n' in idle, idle  # every prompt is counted unsplit
        unsplit = int(re.search(r'^ovphi_prompt_tokens_total\{kind="unsplit"\} (\d+)$', idle, re.M).group(1))
        assert unsplit >= first.usage.prompt_tokens + second.usage.prompt_tokens
        gauges = dict(re.findall(r"^ovphi_(batch_size|kv_cache_usage_ratio) (\S+)$", idle, re.M))
        assert int(gauges["batch_size"]) >= 0 and 0 <= float(gauges["kv_cache_usage_ratio"]) <= 1
    finally:
        server.stop()


@pytest.mark.parametrize("stage", ["encode", "prefill"])
def test_a_lone_request_cancelled_inside_genai_ends_at_once_and_the_next_is_answered(batch_engine, stage):
    """Eight 1344x1344 pictures (about 10 s to encode on 2 cores), or a prompt of 60,000 tokens (a prefill of
    minutes: the issue's 70k-token case) cannot be stopped inside genai: a new worker stops them."""
    engine = batch_engine(slots=1)
    big = [Image.new("RGB", (1344, 1344), (30 * n, 90, 200 - 20 * n)) for n in range(8)]
    long = question("Describe them.", *big) if stage == "encode" else question("word " * 20_000)
    hello = engine.complete(question("Hello"), LONG)
    running = engine.submit(long, LONG)
    waiting = engine.submit(question("Hello"), LONG)
    next(event for event in running if isinstance(event, Status))
    time.sleep(1.0)  # inside the worker's add_request or step
    asked = time.perf_counter()
    running.cancel()
    stopped = running.result()
    assert time.perf_counter() - asked < 1.0 and stopped.finish_reason == "cancelled" and stopped.token_ids == []
    assert waiting.result().token_ids == hello.token_ids  # answered by the new worker


def test_a_full_kv_cache_delays_requests_and_refuses_one_it_cannot_hold(fp32_ir, square_images, monkeypatch):
    """A KV cache of 40 blocks (about 1,300 tokens here): three requests of about 980 tokens each cannot all hold
    their blocks at once, and genai makes them take turns (preempting and recomputing), each answered as alone;
    a prompt of 6,800 tokens can never fit and is refused in one line (a 400 in the server)."""
    import ovphi.runtime.batch_engine as batch_engine_module

    settings = batch_engine_module.batch_scheduler_settings
    monkeypatch.setattr(batch_engine_module, "batch_scheduler_settings",
                        lambda *args: settings(*args) | {"cache_size": 0, "num_kv_blocks": 40})
    engine = load(fp32_ir, backend="genai-batch", cache=False, **EXACT)
    try:
        answer = GenerationConfig(max_new_tokens=200, ignore_eos=True)
        pictures = [*square_images, Image.new("RGB", square_images[0].size, (20, 160, 40))]
        with pytest.raises(PromptTooLong, match="does not fit the KV cache"):
            engine.complete(question("word " * 2000, pictures[0]), answer)
        handles = [engine.submit(question("Describe the image.", picture), answer) for picture in pictures]
        together = [handle.result().token_ids for handle in handles]
        alone = [engine.complete(question("Describe the image.", picture), answer).token_ids for picture in pictures]
        assert together == alone and all(len(ids) == 200 for ids in together)
    finally:
        engine.close()
