"""`ovphi chat` driven through a pseudo-terminal, as a person would use it."""
import json
import os
import sys

import pexpect
import pytest
from conftest import default_sigint

PROMPT = "you> "


def spawn_chat(tmp_path, *args, env=None):
    """`ovphi chat ARGS` in a pseudo-terminal in tmp_path, its state there too, at its first prompt."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_STATE_HOME=str(tmp_path / "state"), **(env or {}))
    child = pexpect.spawn(sys.executable, ["-m", "ovphi", "chat", *map(str, args)], env=env, encoding="utf-8",
                          timeout=120, cwd=str(tmp_path), preexec_fn=default_sigint)
    child.expect(PROMPT)
    return child


def end_chat(child):
    """End the chat as its user would, with end of input, and wait for it to exit: a forced close gives a process
    of this size 0.1 s after SIGKILL to be gone, which a loaded machine exceeded once (an error at teardown)."""
    if child.isalive():
        child.sendeof()
        child.expect(pexpect.EOF)
    child.close()


@pytest.fixture
def chat(int4_ir, tmp_path, red_image):
    red_image.save(tmp_path / "red.png")
    child = spawn_chat(tmp_path, int4_ir, "--image", tmp_path / "red.png", "--max-new-tokens", "16")
    yield child
    end_chat(child)


def ask(child, text):
    child.sendline(text)
    child.expect(PROMPT)
    return child.before


def test_two_turns_image_reset_and_save(chat, tmp_path):
    first = ask(chat, "Describe the image.")
    assert "assistant> " in first
    assert "attached" in ask(chat, f"/image {tmp_path / 'red.png'}")
    assert "assistant> " in ask(chat, "And this one?")
    assert "saved" in ask(chat, "/save conversation.json")
    saved = json.loads((tmp_path / "conversation.json").read_text())
    roles = [m["role"] for m in saved["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert saved["messages"][2]["content"][0] == {"type": "image", "number": 2, "source": str(tmp_path / "red.png")}
    assert saved["messages"][2]["content"][1] == {"type": "text", "text": "And this one?"}
    assert "new conversation" in ask(chat, "/reset")
    assert "error" not in ask(chat, "   ")  # an empty line is ignored
    assert "unknown command" in ask(chat, "/nope")
    assert "error: image" in ask(chat, "/image missing.png")  # the chat survives its own errors
    assert "/save FILE" in ask(chat, "/help")
    chat.sendline("/quit")
    chat.expect(pexpect.EOF)


def test_schema_makes_the_next_answers_json_until_it_is_turned_off(chat, tmp_path):
    (tmp_path / "yes.json").write_text('{"type": "object", "properties": {"yes": {"type": "boolean"}},'
                                       ' "required": ["yes"], "additionalProperties": false}')
    assert "follow the JSON schema" in ask(chat, "/schema yes.json")
    answer = ask(chat, "Is it red?")
    assert json.loads(answer.split("assistant> ")[1].splitlines()[0])["yes"] in (True, False)
    assert "error: " in ask(chat, "/schema missing.json")
    assert "free text" in ask(chat, "/schema off")


def test_ctrl_c_stops_an_answer_and_the_chat_goes_on(int4_ir, tmp_path, red_image):
    red_image.save(tmp_path / "red.png")
    child = spawn_chat(tmp_path, int4_ir, "--image", tmp_path / "red.png", "--max-new-tokens", "100000",
                       "--repetition-penalty", "1.0")
    child.sendline("Describe the image at length.")
    child.expect("assistant> ")
    child.expect(r"\S")  # some of the answer has been written
    child.sendintr()
    child.expect(r"\[stopped\]")
    child.expect(PROMPT)
    child.sendline("/save c.json")
    child.expect(PROMPT)
    messages = json.loads((tmp_path / "c.json").read_text())["messages"]
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"]
    child.sendline("Another question?")  # the chat goes on; this answer is stopped too
    child.expect("assistant> ")
    child.expect(r"\S")
    child.sendintr()
    child.expect(r"\[stopped\]")
    child.expect(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)


def test_errors_never_end_the_chat_and_blocks_span_lines(chat, tmp_path):
    assert "error: /save" in ask(chat, f"/save {tmp_path}")  # a folder: OSError, one line
    assert "error:" in ask(chat, "/save /proc/nope/x.json")
    assert "error: image" in ask(chat, f"/image {tmp_path}")
    chat.sendline('"""')
    chat.sendline("First line of a question,")
    chat.sendline("and its second line.")
    chat.sendline('"""')
    chat.expect(PROMPT)
    assert "assistant> " in chat.before and "tokens/s" in chat.before  # answered, with its speed
    assert "saved" in ask(chat, "/save c.json")
    saved = json.loads((tmp_path / "c.json").read_text())["messages"]
    assert saved[-2]["content"][-1]["text"] == "First line of a question,\nand its second line."
    chat.sendintr()  # Ctrl-C at an empty prompt: a hint; twice: goodbye
    chat.expect("Ctrl-C again")
    chat.sendintr()
    chat.expect(pexpect.EOF)
    assert (tmp_path / "state" / "ovphi" / "chat_history").exists()  # kept for the next session


@pytest.fixture
def fake_chat(tiny_dir, tmp_path):
    """`ovphi chat` on the fake engine (fake_engine.py): for what does not need a model's answer."""
    from served import FAKE

    def start(*args):
        started.append(spawn_chat(tmp_path, tiny_dir, "--backend", "fake", *args, env=FAKE))
        return started[-1]

    started = []
    yield start
    for child in started:
        end_chat(child)


def test_a_pasted_block_of_lines_is_one_question(fake_chat, tmp_path):
    chat = fake_chat()
    chat.send("first line\nsecond line\nthird line\n")  # as a terminal delivers a paste: all at once
    chat.expect(PROMPT)
    assert chat.before.count("assistant> ") == 1
    ask(chat, "/save talk.json")
    messages = json.loads((tmp_path / "talk.json").read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == [{"type": "text", "text": "first line\nsecond line\nthird line"}]


def test_files_that_cannot_be_written_are_one_line_and_the_chat_goes_on(fake_chat):
    chat = fake_chat("--history-file", "/proc/version")
    said = ask(chat, "/save /proc/version")
    assert "error: cannot write /proc/version: no new file can be made in /proc" in said
    assert "assistant> " in ask(chat, "Still there?")
    chat.sendline("/quit")
    chat.expect(pexpect.EOF)
    rest = chat.before
    assert "the line history was not saved in /proc/version" in rest and "Traceback" not in rest
