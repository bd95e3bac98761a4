"""The serving core (scheduler.py, generated.py): one generation thread per engine, a handle per request whose
cancel() ends that request alone, and the ids the model generated restored to a history sent back as text."""
import asyncio
import time

import pytest
from exact import EXACT
from fake_engine import FakeEngine

from ovphi.errors import OvphiError
from ovphi.runtime import Chunk, Conversation, GenerationConfig, ImagePart, TurnResult, load
from ovphi.runtime.generated import GeneratedAnswers
from ovphi.runtime.scheduler import Busy

ASK = GenerationConfig(max_new_tokens=6)


@pytest.fixture
def slow_fake(tiny_dir, monkeypatch):
    """The fake engine at 50 ms a word."""
    monkeypatch.setenv("OVPHI_FAKE_DELAY", "0.05")
    return FakeEngine(tiny_dir)


def question(text="Describe it.", *images):
    conversation = Conversation()
    conversation.add("user", *[ImagePart(image) for image in images], text)
    return conversation


def test_cancelling_the_running_request_ends_it_alone(slow_fake):
    running, queued = slow_fake.submit(question(), ASK), slow_fake.submit(question(), ASK)
    next(event for event in running if isinstance(event, Chunk))
    running.cancel()
    stopped, answered = running.result(), queued.result()
    assert stopped.finish_reason == "cancelled" and len(stopped.token_ids) < ASK.max_new_tokens
    assert answered.finish_reason == "length" and answered.answer == slow_fake.complete(question(), ASK).answer


def test_cancelling_a_queued_request_ends_it_before_it_runs_and_the_running_one_goes_on(slow_fake):
    running, queued = slow_fake.submit(question(), ASK), slow_fake.submit(question(), ASK)
    queued.cancel()
    never = queued.result()
    assert (never.finish_reason, never.token_ids, never.timings.answer_tokens) == ("cancelled", [], 0)
    answered = running.result()
    assert answered.finish_reason == "length" and len(answered.token_ids) == ASK.max_new_tokens
    assert running.result() is answered and list(running) == []  # an ended handle stays ended


def test_a_handle_is_read_by_async_for_without_a_thread_per_event(slow_fake):
    async def read():
        return [event async for event in slow_fake.submit(question(), ASK)]

    events = asyncio.run(read())
    assert isinstance(events[-1], TurnResult) and "".join(event.text for event in events[:-1]) == events[-1].answer
    assert len([event for event in events if isinstance(event, Chunk)]) == ASK.max_new_tokens


class Failing(FakeEngine):
    """Fails the turns whose question is "fail", as an engine's error would."""

    def generate(self, conversation, generation, emit):
        if conversation.messages[-1].text == "fail":
            raise OvphiError("asked to fail")
        return super().generate(conversation, generation, emit)


def test_an_error_reaches_its_own_request_and_the_next_one_is_answered(tiny_dir):
    engine = Failing(tiny_dir)
    failing, fine = engine.submit(question("fail"), ASK), engine.submit(question(), ASK)
    with pytest.raises(OvphiError, match="asked to fail"):
        list(failing)
    with pytest.raises(OvphiError, match="asked to fail"):
        failing.result()
    assert fine.result().finish_reason == "length"


def test_a_full_queue_is_busy_and_the_generation_thread_ends_when_nothing_waits(slow_fake):
    handles = [slow_fake.submit(question(), ASK) for _ in range(3)]  # one runs, two wait
    time.sleep(0.02)
    with pytest.raises(Busy):
        slow_fake.submit(question(), ASK, max_waiting=2)
    for handle in handles:
        handle.result()
    deadline = time.monotonic() + 2
    while slow_fake.scheduler.working and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not slow_fake.scheduler.working


def test_generated_ids_come_back_for_the_conversation_repeated_the_most(red_image, blue_image):
    answers = GeneratedAnswers(size=2)
    a, b = question("Describe.", red_image), question("Describe.", blue_image)
    answers.remember(a, TurnResult("It is red.", [5, 6, 7], "stop", None))
    answers.remember(b, TurnResult("It is blue.", [8, 9], "stop", None))
    again = question("Describe.", red_image.copy())  # the same picture, sent again
    again.add("assistant", " It is red. ")  # as a client may send it back
    again.add("user", "Sure?")
    answers.restore(again)
    assert again.messages[1].token_ids == [5, 6, 7]
    edited = question("Describe.", red_image)
    edited.add("assistant", "It is green.")
    answers.restore(edited)
    assert edited.messages[1].token_ids is None
    answers.remember(question("Other."), TurnResult("x", [1], "stop", None))  # b is forgotten: a was used later
    b.add("assistant", "It is blue.")
    answers.restore(b)
    assert b.messages[1].token_ids is None


@pytest.mark.parametrize("backend", ["optimum", "genai"])
def test_interleaved_conversations_answer_as_a_fresh_engine_does(fp32_ir, red_image, blue_image, backend):
    """A1, B1, A2, B2, each about its own picture of the same size, sent as a client sends them: the whole history
    as text. A2 and B2 equal the same histories asked of a fresh engine with the ids the model generated (genai,
    which takes pictures only with the last user message, replays the first turn's)."""
    engine = load(fp32_ir, backend, **EXACT)
    blue = blue_image.resize(red_image.size)
    first = {name: question("Describe the image.", image) for name, image in (("a", red_image), ("b", blue))}
    said = {name: engine.complete(conversation, ASK) for name, conversation in first.items()}
    for name in ("a", "b"):
        later = question("Describe the image.", red_image if name == "a" else blue)
        later.add("assistant", said[name].answer)
        later.add("user", "And the colours?")
        answer = engine.complete(later, ASK)
        assert later.messages[1].token_ids == said[name].token_ids  # restored though the other came between
        fresh = load(fp32_ir, backend, cache=False, prefix_cache_mb=0, **EXACT).complete(later, ASK)
        assert answer.token_ids == fresh.token_ids
