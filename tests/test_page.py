"""The chat page at `/`, in a real headless Chromium (Debian's, driven by Playwright) against a real `ovphi serve`
on 127.0.0.1: the tiny model where the model's part matters, the fake engine where the answer's content does."""
import os
import shutil
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright
from served import FAKE, Served

CHROMIUM = os.environ.get("OVPHI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# without the background-networking switches Chromium reaches for Google's hosts at every start
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SCREENSHOT = os.environ.get("OVPHI_PAGE_SCREENSHOT")  # where to keep the screenshot docs/serve.md shows
HOSTILE = ('**bold** <script>window.pwned=1</script> <img src=x onerror="window.pwned=1">'
           ' [click](javascript:window.pwned=1) <a href="javascript:window.pwned=1">here</a>')


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """A new tab (its own storage) on a server's page, every request it makes recorded."""
    contexts = []

    def open_page(server, width=1000):
        context = browser.new_context(viewport={"width": width, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.requests = []
        page.on("request", lambda request: page.requests.append(request.url))
        page.goto(server.base + "/")
        return page

    yield open_page
    for context in contexts:
        context.close()


def kept_to(server, page):
    """Whether every request the page made went to its server (pictures it shows are data: URLs)."""
    return all(url.startswith(server.base + "/") or url.startswith("data:") for url in page.requests)


def ready(page):
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


def ask(page, text):
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def answers(page):
    return page.locator("#messages .message.assistant")


def finished(page, count):
    """The page once its count-th answer has its speed line and Send is enabled again."""
    expect(answers(page)).to_have_count(count)
    expect(answers(page).nth(count - 1).locator(".stats")).to_contain_text("answer tokens", timeout=120_000)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


@pytest.fixture(scope="module")
def tiny_server(int4_ir):
    server = Served(int4_ir)
    yield server
    server.stop()


def test_a_picture_and_a_question_stream_an_answer_and_the_second_turn_is_cached(tiny_server, open_page, tmp_path):
    from conftest import drawn_image

    picture = tmp_path / "red.png"
    drawn_image((640, 480), (200, 30, 30), (30, 200, 30)).save(picture)
    page = ready(open_page(tiny_server))
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach pictures").click()
    chooser.value.set_files(picture)
    expect(page.get_by_alt_text("picture 1 to send")).to_be_visible()
    page.get_by_text("Settings").click()
    page.get_by_label("Max tokens").fill("24")
    ask(page, "Describe the image.")
    finished(page, 1)
    first = answers(page).nth(0).locator(".stats").inner_text()
    assert "TTFT" in first and "tokens/s" in first and " 0 cached" in first and "24 answer tokens" in first
    expect(page.locator("#messages .message.user img")).to_have_count(1)
    ask(page, "And the colours?")
    finished(page, 2)
    second = answers(page).nth(1).locator(".stats").inner_text()
    cached = int(second.split(" cached")[0].split()[-1])
    assert cached > 757, second  # the picture and the first turn came from the KV cache
    if SCREENSHOT:
        page.get_by_text("Settings").click()
        page.screenshot(path=SCREENSHOT)
    assert kept_to(tiny_server, page), page.requests


@pytest.fixture(scope="module")
def slow_server(tiny_dir):
    server = Served(tiny_dir, "--backend", "fake", env=FAKE | {"OVPHI_FAKE_WORDS": "400", "OVPHI_FAKE_DELAY": "0.05",
                                                               "OVPHI_FAKE_PREFILL": "1.5"})
    yield server
    server.stop()


def test_the_status_shows_before_the_first_token_and_stop_cancels_the_generation(slow_server, open_page):
    page = ready(open_page(slow_server))
    ask(page, "Tell me a long story.")
    expect(answers(page).nth(0).locator(".status")).to_contain_text("reading 10 prompt tokens")
    expect(answers(page).nth(0).locator(".body")).to_contain_text("fake engine")  # streaming
    page.get_by_role("button", name="Stop").click()
    expect(answers(page).nth(0).locator(".stats")).to_contain_text("stopped")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    words = len(answers(page).nth(0).locator(".body").inner_text().split())
    assert words < 400
    metrics = ""
    for _ in range(50):  # the server notices the closed stream within a token (50 ms)
        metrics = requests.get(slow_server.base + "/metrics", timeout=10).text
        if 'ovphi_turns_total{finish_reason="cancelled"} 1' in metrics:
            break
        page.wait_for_timeout(100)
    assert 'ovphi_turns_total{finish_reason="cancelled"} 1' in metrics


def test_the_openai_stream_has_no_status_events_unless_asked(slow_server):
    client = slow_server.client()
    question = [{"role": "user", "content": "Hi"}]
    stream = client.chat.completions.create(model="tiny", messages=question, max_tokens=3, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "a fake engine"
    raw = slow_server.post({"model": "tiny", "messages": question, "max_tokens": 3, "stream": True,
                            "ovphi_status": True}).text
    assert raw.index("event: status\ndata: ") < raw.index('"content": "a"')


@pytest.fixture(scope="module")
def hostile_server(tiny_dir):
    server = Served(tiny_dir, "--backend", "fake", env=FAKE | {"OVPHI_FAKE_TEXT": HOSTILE})
    yield server
    server.stop()


def test_a_hostile_answer_runs_no_script_and_the_page_keeps_to_its_server(hostile_server, open_page):
    page = ready(open_page(hostile_server))
    ask(page, "Say something nasty.")
    finished(page, 1)
    body = answers(page).nth(0).locator(".body")
    expect(body.locator("strong")).to_have_text("bold")  # Markdown is rendered
    assert body.locator("script").count() == 0 and body.locator("a[href^='javascript']").count() == 0
    for link in body.locator("a").all():
        link.click()
    assert page.evaluate("window.pwned") is None
    assert kept_to(hostile_server, page), page.requests


def test_the_conversation_survives_a_reload_and_new_chat_clears_it(hostile_server, open_page):
    page = ready(open_page(hostile_server))
    ask(page, "Remember me.")
    finished(page, 1)
    page.reload()
    ready(page)
    expect(page.locator("#messages .message.user .body")).to_have_text("Remember me.")
    expect(answers(page)).to_have_count(1)
    page.get_by_role("button", name="New chat").click()
    expect(page.locator("#messages .message")).to_have_count(0)
    page.reload()
    ready(page)
    expect(page.locator("#messages .message")).to_have_count(0)


def test_with_an_api_key_the_page_asks_for_it_once_and_says_when_it_is_wrong(tiny_dir, open_page):
    server = Served(tiny_dir, "--backend", "fake", env=FAKE, key="sesame")
    try:
        page = open_page(server)
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("This server needs an API key.")
        dialog.get_by_label("Key").fill("wrong")
        dialog.get_by_label("Key").press("Enter")
        expect(dialog).to_contain_text("refused that key")
        dialog.get_by_label("Key").fill("sesame")
        dialog.get_by_role("button", name="Use this key").click()
        ready(page)
        ask(page, "Hi")
        finished(page, 1)
        page.reload()  # the key is kept for the tab
        ready(page)
        expect(page.get_by_role("dialog")).to_be_hidden()
    finally:
        server.stop()


def test_the_page_works_by_keyboard_and_fits_a_narrow_window(hostile_server, open_page):
    page = ready(open_page(hostile_server, width=360))
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.keyboard.press("Tab")  # New chat
    page.keyboard.press("Tab")  # the message box
    assert page.evaluate("document.activeElement.id") == "prompt"
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    page.keyboard.press("Enter")
    finished(page, 1)
    assert page.locator("#messages .message.user .body").inner_text() == "first line\nsecond line"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def test_pictures_can_be_dropped_and_pasted(hostile_server, open_page):
    page = ready(open_page(hostile_server))
    page.evaluate("""() => {
        const bytes = atob("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5E"
                           + "rkJggg==");
        const png = new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], {type: "image/png"});
        const picture = () => {
            const data = new DataTransfer();
            data.items.add(new File([png], "dot.png", {type: "image/png"}));
            return data;
        };
        const event = {bubbles: true, cancelable: true};
        document.getElementById("messages").dispatchEvent(
            new DragEvent("drop", {...event, dataTransfer: picture()}));
        document.getElementById("prompt").dispatchEvent(
            new ClipboardEvent("paste", {...event, clipboardData: picture()}));
    }""")
    expect(page.locator("#attachments img")).to_have_count(2)
    page.get_by_role("button", name="Remove picture 1").click()
    expect(page.locator("#attachments img")).to_have_count(1)
    ask(page, "What is this?")
    finished(page, 1)
    expect(page.locator("#messages .message.user img")).to_have_count(1)
    assert "110 prompt tokens" in answers(page).nth(0).locator(".stats").inner_text()  # the fake: 10 + 100 a picture
