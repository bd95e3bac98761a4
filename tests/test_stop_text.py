"""Stop strings, one implementation for every engine (stop_text.py): text that may begin one is held back, the
answer ends where the first begins, the log probabilities go with the text they begin, and the TurnResult keeps
the whole tokens before the cut; then through a real engine, `ovphi ask --stop` and the server."""
import subprocess
import sys

from served import Served

from ovphi.runtime import GenerationConfig, load
from ovphi.runtime.events import Chunk, TurnResult
from ovphi.runtime.stop_text import StopText
from ovphi.runtime.timings import TurnTimings

TIMINGS = TurnTimings(load_s=0, vision_s=0, ttft_s=0, tpot_s=None, total_s=0, prompt_tokens=1, processed_tokens=1,
                      answer_tokens=0)


def feed(stop_text, pieces):
    """What StopText passes on of Chunks with these texts (token ids 0, 1, ...; log probabilities 'a', 'b', ...)."""
    passed = [stop_text.add(Chunk(text, [number], 0.0, (chr(97 + number),))) for number, text in enumerate(pieces)]
    return [None if chunk is None else (chunk.text, "".join(chunk.logprobs)) for chunk in passed]


def test_text_that_may_begin_a_stop_string_is_held_and_the_answer_ends_where_one_begins():
    stop_text = StopText(["END", "\n\n"])
    passed = feed(stop_text, ["Hello E", "N", "d of it. EN", "D more", "after"])
    assert passed[0] == ("Hello", "a")  # " E" could begin "END": held back until it did not
    assert "".join(text for text, _ in passed[:4]) == "Hello ENd of it. " and stop_text.hit
    assert passed[4] is None and stop_text.rest(1.0) is None  # generated before the engine saw the stop
    plain = StopText(())
    chunk = Chunk("abc", [0], 0.0)
    assert plain.add(chunk) is chunk and plain.rest(1.0) is None and not plain.hit


def test_a_tokens_logprob_goes_with_the_first_of_its_text_and_the_cut_ones_are_dropped():
    stop_text = StopText(["ND"])
    passed = feed(stop_text, ["Hi", " E", "", "é", "N", "D", " more"])
    assert passed[:4] == [("H", "a"), ("i ", "b"), ("", ""), ("E", "")]  # the last character may begin "ND"
    assert passed[4:] == [("é", "cd"), ("", ""), None]  # "c" has no text: it goes with the next character
    unfinished = StopText(["zz"])
    assert feed(unfinished, ["x", ""]) == [("", ""), ("", "")]  # "x" may begin "zz"
    held = unfinished.rest(1.0)
    assert (held.text, held.logprobs) == ("x", ("a", "b"))  # a token of no text at the end is still the answer's


def test_the_result_keeps_the_whole_tokens_before_the_cut_or_none_when_it_falls_inside_one():
    at_boundary = StopText(["wor"])
    feed(at_boundary, ["Hello", " ", "wor", "ld"])
    result = at_boundary.cut(TurnResult("Hello world", [0, 1, 2, 3], "cancelled", TIMINGS))
    assert (result.answer, result.token_ids, result.finish_reason) == ("Hello", [0, 1], "stop")
    inside = StopText(["or"])
    feed(inside, ["Hello", " wor", "ld"])
    result = inside.cut(TurnResult("Hello world", [0, 1, 2], "cancelled", TIMINGS))
    assert (result.answer, result.token_ids, result.finish_reason) == ("Hello w", None, "stop")
    untouched = TurnResult("Hi", [0], "length", TIMINGS)
    assert StopText(["zz"]).cut(untouched) is untouched


def test_an_engine_stops_at_the_string_and_the_next_turn_reuses_the_prefix(int4_ir):
    engine = load(int4_ir)
    asked = GenerationConfig(max_new_tokens=16, ignore_eos=True)
    from ovphi.runtime import Conversation

    conversation = Conversation()
    conversation.add("user", "Describe a quiet street.")
    free = list(engine.stream(conversation, asked))[-1]
    stop = free.answer[len(free.answer) // 2:][:2]
    engine.reset()
    events = list(engine.stream(conversation, GenerationConfig(max_new_tokens=16, ignore_eos=True, stop=(stop,))))
    cut = events[-1]
    assert cut.finish_reason == "stop" and cut.answer == free.answer[:free.answer.index(stop)].strip()
    assert "".join(event.text for event in events[:-1] if isinstance(event, Chunk)).strip() == cut.answer
    conversation.add("assistant", cut.answer, token_ids=cut.token_ids)
    conversation.add("user", "And then?")
    again = list(engine.stream(conversation, GenerationConfig(max_new_tokens=4)))[-1]
    assert again.timings.processed_tokens < again.timings.prompt_tokens - free.timings.prompt_tokens


def test_ask_stop_ends_the_answer_where_the_string_begins(int4_ir, red_image, tmp_path):
    red_image.save(tmp_path / "red.png")
    command = [sys.executable, "-m", "ovphi", "ask", str(int4_ir), "--image", str(tmp_path / "red.png"), "--no-cache",
               "--max-new-tokens", "16"]
    free = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert free.returncode == 0, free.stderr
    answer = free.stdout.strip()
    stop = answer[len(answer) // 2:][:2]
    cut = subprocess.run(command + ["--stop", stop], capture_output=True, text=True, timeout=300)
    assert cut.returncode == 0 and cut.stdout.strip() == answer[:answer.index(stop)].strip()
    empty = subprocess.run(command + ["--stop", ""], capture_output=True, text=True, timeout=300)
    assert empty.returncode == 1 and "stop strings must be text" in empty.stderr and "Traceback" not in empty.stderr


def test_the_servers_stop_is_the_same_and_the_next_turn_shows_the_prefix_reused(int4_ir):
    served = Served(int4_ir, "--no-cache")
    try:
        client, model = served.client(), int4_ir.name
        ask = [{"role": "user", "content": "Describe a quiet street."}]
        options = {"model": model, "max_tokens": 16, "temperature": 0, "extra_body": {"ignore_eos": True}}
        free = client.chat.completions.create(messages=ask, **options).choices[0].message.content
        stop = free[len(free) // 2:][:2]
        first = client.chat.completions.create(messages=ask, stop=[stop], **options)
        assert first.choices[0].message.content == free[:free.index(stop)] and first.choices[0].finish_reason == "stop"
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
            messages=ask, stop=[stop], stream=True, **options) if chunk.choices)
        assert streamed == first.choices[0].message.content
        history = ask + [{"role": "assistant", "content": streamed}, {"role": "user", "content": "And then?"}]
        later = client.chat.completions.create(messages=history, **options)
        assert later.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    finally:
        served.stop()
