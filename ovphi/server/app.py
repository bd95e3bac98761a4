"""The OpenAI-compatible HTTP API on one warm engine: POST /v1/chat/completions (streamed or not),
GET /v1/models, /health, /metrics, and a chat page at / (static files in page/).

Requests run on the engine's scheduler: one at a time (runtime/scheduler.py), or up to --slots at once in the
genai-batch engine (runtime/batch_engine.py); the others wait in its bounded FIFO queue (429 with Retry-After when
it is full). An answer sent back in a later request's history is fed to
the model as the ids it generated (runtime/generated.py), so the KV cache it holds is reused:
`usage.prompt_tokens_details.cached_tokens` counts the prompt tokens that were not computed again (left out where
the engine does not say: genai-batch). A client that goes away cancels its own request: at once in a vision
encode or a prefill, else within a token.
"""
import asyncio
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..errors import OvphiError, PromptTooLong, Unsupported
from ..images import MAX_BYTES, MAX_IMAGES
from ..runtime import Chunk, Status, TurnResult
from ..runtime.scheduler import Busy
from .metrics import Metrics
from .requests import RequestError, conversation_of, generation_of
from .schema import ChatCompletionRequest, error_body
from .tools import chosen_tools, must_call, tool_call_of


@dataclass
class ServerSettings:
    model_name: str
    api_key: str | None = None
    max_queue: int = 8  # requests waiting for the model beyond the one it is answering
    max_images: int = MAX_IMAGES
    max_body_mb: int = 50
    max_tokens: int = 1024  # an answer's default and largest length
    temperature: float = 1.0  # OpenAI's default where a request gives none
    request_timeout_s: float = 600.0
    body_timeout_s: float = 30.0  # a request body that arrives slower than this is refused (408): slow drip
    allow_private_urls: bool = False
    allow_local_dir: str | None = None
    max_image_bytes: int = MAX_BYTES
    cors_origins: tuple = ()
    created: int = 0  # when the model folder was made (GET /v1/models); 0: when the server started
    fingerprint: str = "ovphi"  # system_fingerprint: ovphi's version and the engine


def logprobs_body(entries):
    """OpenAI's choice.logprobs of the answer tokens' TokenLogprobs."""
    def token(entry):
        return {"token": entry.text, "logprob": entry.logprob,
                "bytes": None if entry.bytes is None else list(entry.bytes)}
    return {"content": [token(entry) | {"top_logprobs": [token(other) for other in entry.top]} for entry in entries],
            "refusal": None}


PAGE = Path(__file__).parent / "page"
# what the page may load: its own files, its pictures (data: and blob: URLs), its own API; nothing from elsewhere,
# whatever an answer holds
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; script-src 'self'; "
               "style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def is_open(path):
    """Whether a path needs no key: /health, and the page's static files, which hold nothing of the model."""
    return path in ("/health", "/") or path.startswith("/page/")


class RequireKey:
    """ASGI middleware: every path but /health and the page's files needs `Authorization: Bearer KEY` (a plain
    ASGI class: Starlette's BaseHTTPMiddleware would hide a client's disconnect from a streamed response)."""

    def __init__(self, app, key, refuse):
        self.app, self.expected, self.refuse = app, f"Bearer {key}".encode(), refuse

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not is_open(scope["path"]):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                return await self.refuse()(scope, receive, send)
        await self.app(scope, receive, send)


class StreamUntilDisconnect(StreamingResponse):
    """A streamed response that ends when the client goes away. Starlette leaves that to send() raising
    (ASGI 2.4), but uvicorn's send() can wait instead: listen for the disconnect, call on_disconnect (the
    engine's stop: the stream may be waiting on a vision encode or a prefill, which then ends at once), then
    close the stream, which frees the slot."""

    def __init__(self, content, on_disconnect, **options):
        super().__init__(content, **options)
        self.on_disconnect = on_disconnect

    async def __call__(self, scope, receive, send):
        try:
            async with anyio.create_task_group() as group:
                async def stream():
                    await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                self.on_disconnect()
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


class Server:
    """The engine (its scheduler queues the requests) and the server's metrics."""

    def __init__(self, load_engine, settings):
        self.settings = settings
        self.metrics = Metrics()
        self.engine, self.load_error = None, None
        threading.Thread(target=self.load, args=(load_engine,), daemon=True).start()

    def load(self, load_engine):
        try:
            engine = load_engine()
            engine.warm_up()
            self.engine = engine
        except Exception as error:  # /health says why
            self.load_error = str(error).splitlines()[0]

    async def answer(self, body):
        """(the request's handle, its events, the first of them), once the turn has started: an error of the
        prompt is raised here, before any answer is sent."""
        settings = self.settings
        conversation = await anyio.to_thread.run_sync(conversation_of, body, settings)
        generation = generation_of(body, settings)
        try:
            handle = self.engine.submit(conversation, generation, max_waiting=settings.max_queue)
        except Unsupported as error:  # the request's field of the same name, but for the grammar's two sources
            grammar_source = "tools" if chosen_tools(body.tools, body.tool_choice) else "response_format"
            raise RequestError(str(error), param=grammar_source if error.field == "grammar" else error.field,
                               code="unsupported_parameter") from None
        except Busy:
            raise RequestError("the server is busy: too many requests are waiting", status=429,
                               code="rate_limit_exceeded") from None
        events = aiter(handle)
        try:
            first = await anext(events)
        except BaseException:
            handle.cancel()
            raise
        return handle, events, first

    async def turn(self, request, handle, events, first):
        """Async iterator over (text to send, its tokens' TokenLogprobs, the Status or TurnResult that came, or
        None); cancels the request when its client goes away (checked after every token: uvicorn does not cancel
        a streamed response) or its deadline passes."""
        deadline = time.monotonic() + self.settings.request_timeout_s
        event, result, answering = first, None, False
        try:
            while True:
                if isinstance(event, TurnResult):
                    result = event
                    yield "", [], result
                    return
                if isinstance(event, Status):
                    yield "", [], event
                elif isinstance(event, Chunk):
                    answering = True
                    if time.monotonic() > deadline:
                        handle.cancel()
                    if event.text or event.logprobs:
                        yield event.text, list(event.logprobs), None
                if await request.is_disconnected():
                    handle.cancel()
                event = await anext(events)
        finally:
            if result is None:
                handle.cancel()
                if not answering and not self.engine.capabilities.stops_at_once:
                    print(f"ovphi serve: a request was cancelled inside the {self.engine.name} engine's vision"
                          " encode or prefill, which it cannot stop: the engine is held until that ends (the"
                          " optimum and genai-batch engines stop at once)", flush=True)
            else:
                self.metrics.turn(result.timings)
            self.metrics.finished("cancelled" if result is None else result.finish_reason)


def finish_reason(result):
    return "stop" if result.finish_reason == "stop" else "length"


def usage(result):
    """OpenAI's usage; `prompt_tokens_details.cached_tokens` only where the engine says how many came from its cache."""
    timings = result.timings
    counts = {"prompt_tokens": timings.prompt_tokens, "completion_tokens": timings.answer_tokens,
              "total_tokens": timings.prompt_tokens + timings.answer_tokens}
    cached = timings.cached_tokens
    return counts if cached is None else counts | {"prompt_tokens_details": {"cached_tokens": cached}}


def timings(result):
    """What the engine measured of this turn, in milliseconds (an extension field, as llama.cpp's server has):
    a client under load can tell its queueing from the model's time, and TPOT counts tokens, not text chunks."""
    measured = result.timings
    ms = lambda seconds: None if seconds is None else round(seconds * 1000, 1)  # noqa: E731
    return {"ttft_ms": ms(measured.ttft_s), "tpot_ms": ms(measured.tpot_s), "total_ms": ms(measured.total_s),
            "vision_ms": ms(measured.vision_s), "processed_tokens": measured.processed_tokens}


UNION_TAGS = ("str", "int", "float", "bool")  # what pydantic puts in an error's place for a member of a union


def validation_problem(error):
    """(the field as the client wrote it, e.g. messages[0].content[1], or None; the message) of the most specific
    of a validation error's problems."""
    problem = max(error.errors(), key=lambda item: len(item["loc"]))
    where = ""
    for part in problem["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part not in UNION_TAGS and "[" not in part:
            where += f".{part}" if where else part
    return where or None, problem["msg"].removeprefix("Value error, ")


def status_body(status):
    return {"stage": status.stage, "message": status.message, "count": status.count, "eta_s": status.eta_s}


def create_app(load_engine, settings):
    """The FastAPI app serving the engine that load_engine() returns (loaded and warmed up in the background)."""
    app = FastAPI(title="ovphi", docs_url=None, redoc_url=None)
    server = Server(load_engine, settings)
    app.state.server = server
    created = settings.created or int(time.time())

    def failure(status, message, kind="invalid_request_error", code=None, param=None, headers=None):
        server.metrics.request(status)
        return JSONResponse(error_body(message, kind, param, code), status_code=status, headers=headers)

    def unknown_model(name):
        return failure(404, f"the model {name!r} does not exist here; this server has {settings.model_name!r}",
                       code="model_not_found", param="model")

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        return failure(error.status_code, str(error.detail), code="not_found" if error.status_code == 404 else None)

    if settings.api_key:
        app.add_middleware(RequireKey, key=settings.api_key, refuse=lambda: failure(
            401, "a valid API key is needed (Authorization: Bearer KEY)", "authentication_error", code="invalid_api_key"))
    if settings.cors_origins:  # added last, so it runs first: a browser's preflight carries no key
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])

    @app.get("/")
    async def page():
        return FileResponse(PAGE / "index.html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                          "Cache-Control": "no-cache"})

    app.mount("/page", StaticFiles(directory=PAGE), name="page")

    @app.get("/health")
    async def health():
        if server.engine is not None:
            return {"status": "ready"}
        status = "failed: " + server.load_error if server.load_error else "loading"
        return JSONResponse({"status": status}, status_code=503)

    @app.get("/metrics")
    async def metrics():
        engine = server.engine
        return PlainTextResponse(server.metrics.text(engine.scheduler.gauges() if engine else {},
                                                     engine.prefix_cache_counts() if engine else None))

    model_card = {"id": settings.model_name, "object": "model", "created": created, "owned_by": "ovphi"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        return model_card if model_id == settings.model_name else unknown_model(model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        limit = settings.max_body_mb << 20
        if int(request.headers.get("content-length") or 0) > limit:
            return failure(413, f"the request body is larger than {settings.max_body_mb} MB", code="body_too_large")
        raw = bytearray()
        try:
            with anyio.fail_after(settings.body_timeout_s):
                async for block in request.stream():
                    raw += block
                    if len(raw) > limit:
                        return failure(413, f"the request body is larger than {settings.max_body_mb} MB",
                                       code="body_too_large")
        except TimeoutError:
            return failure(408, f"the request body did not arrive within {settings.body_timeout_s:g} s",
                           code="request_timeout")
        try:
            body = ChatCompletionRequest.model_validate(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return failure(400, "the request body is not JSON", code="invalid_json")
        except RecursionError:
            return failure(400, "the request body nests too deeply", code="invalid_json")
        except ValidationError as error:
            where, message = validation_problem(error)
            return failure(400, f"{where}: {message}" if where else message, param=where, code="invalid_request")
        if body.model != settings.model_name:
            return unknown_model(body.model)
        if server.engine is None:
            return failure(503, "the model is still loading", "server_error", code="loading",
                           headers={"Retry-After": "5"})
        try:
            handle, events, first = await server.answer(body)
        except RequestError as error:
            headers = {"Retry-After": "5"} if error.status == 429 else None
            return failure(error.status, str(error), code=error.code, param=error.param, headers=headers)
        except PromptTooLong as error:
            return failure(400, str(error), code="context_length_exceeded", param="messages")
        except OvphiError as error:
            return failure(400, str(error), code="invalid_request")
        except Exception as error:  # a defect: said in one line here and in the log, counted in /metrics
            print(f"ovphi serve: internal error: {type(error).__name__}: {error}".splitlines()[0], flush=True)
            return failure(500, f"internal error ({type(error).__name__})", "server_error", code="internal_error")
        turn = server.turn(request, handle, events, first)
        reply_id, answered = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": reply_id, "created": answered, "model": settings.model_name,
                "system_fingerprint": settings.fingerprint}
        server.metrics.request(200)
        tools = chosen_tools(body.tools, body.tool_choice)
        asked_logprobs = bool(body.logprobs)
        if not body.stream:
            content, logprobs = "", []
            async for text, entries, result in turn:  # the last event is the TurnResult
                content, logprobs = content + text, logprobs + entries
            message = {"role": "assistant", "content": content}  # the text the same answer streamed
            reason = finish_reason(result)
            call = tool_call_of(content, tools)
            if call:  # logprobs are of the content, which a call has none of
                message, reason, asked_logprobs = {"role": "assistant", "content": None, "tool_calls": [call]}, \
                    "tool_calls", False
            return head | {"object": "chat.completion", "usage": usage(result), "timings": timings(result), "choices": [{
                "index": 0, "message": message, "finish_reason": reason,
                "logprobs": logprobs_body(logprobs) if asked_logprobs else None}]}

        def chunk(delta, reason=None, extra=None, logprobs=None):
            return "data: " + json.dumps(head | {"object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": delta, "finish_reason": reason,
                 "logprobs": logprobs_body(logprobs) if asked_logprobs and logprobs else None}]}
                | (extra or {})) + "\n\n"

        async def sse():
            # whether the answer is a tool call, whose text is held and sent whole as delta.tool_calls at the end:
            # known at once but for tool_choice auto (None), where a call opens a JSON object and text never does
            calling, held, held_logprobs = (None if not must_call(body.tool_choice) else True) if tools else False, "", []
            try:
                yield chunk({"role": "assistant", "content": ""})
                async for text, logprobs, event in turn:
                    if text and calling is None:
                        calling = text.startswith("{")
                    if calling is not False:
                        held, held_logprobs = held + text, held_logprobs + logprobs
                    elif text or logprobs or held_logprobs:  # tokens of no text yet held while auto was undecided
                        yield chunk({"content": text}, logprobs=held_logprobs + logprobs)
                        held_logprobs = []
                    if isinstance(event, Status):
                        if body.ovphi_status:  # the page's extension: a named event OpenAI clients never get
                            yield "event: status\ndata: " + json.dumps(status_body(event)) + "\n\n"
                    elif event is not None:
                        reason, call = finish_reason(event), tool_call_of(held, tools)
                        if call:
                            yield chunk({"tool_calls": [{"index": 0} | call]})
                            reason = "tool_calls"
                        elif held:
                            yield chunk({"content": held}, logprobs=held_logprobs)
                        yield chunk({}, reason, {"timings": timings(event)})
                        if body.stream_options and body.stream_options.include_usage:
                            yield "data: " + json.dumps(head | {"object": "chat.completion.chunk", "choices": [],
                                                                "usage": usage(event)}) + "\n\n"
                yield "data: [DONE]\n\n"
            finally:
                await turn.aclose()  # cancels the request if the client left

        return StreamUntilDisconnect(sse(), handle.cancel, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})

    return app
