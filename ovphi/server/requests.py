"""An API request -> a Conversation and a GenerationConfig: images from data: URLs, http(s) URLs (never to
private addresses unless allowed: server-side request forgery) and files beneath an allowed folder."""
import base64
import binascii
import ipaddress
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import OvphiError
from ..images import decode, fetch, read_local
from ..runtime import Conversation, GenerationConfig, ImagePart
from ..runtime.config import MAX_TOP_LOGPROBS, SEEDS
from ..runtime.constraint import schema_grammar
from .tools import call_text, chosen_tools, tool_grammar, tool_result_text, tools_prompt


class RequestError(OvphiError):
    """A request the server refuses: its status and OpenAI error code go with the message."""

    def __init__(self, message, status=400, code=None, param=None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def refuse_private(host, address):
    """Refuse an address that is loopback, private, link-local, reserved or multicast (server-side request forgery):
    every address of every hop of an image URL is put to this."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
        raise RequestError(f"image URLs to private addresses are refused ({host}); start the server with"
                           " --allow-private-urls to allow them", code="invalid_image_url")


def read_image_url(url, settings):
    """A PIL image from an image_url: data:, http(s), or file: / a path beneath settings.allow_local_dir."""
    parsed = urlparse(url)
    try:
        if parsed.scheme == "data":
            header, _, payload = url.partition(",")
            if ";base64" not in header:
                raise RequestError("a data: image URL must be base64", code="invalid_image_url")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError("the data: image URL is not valid base64", code="invalid_image_url") from None
            if len(data) > settings.max_image_bytes:
                raise RequestError(f"the image is larger than {settings.max_image_bytes >> 20} MB",
                                   code="image_too_large")
            return decode(data, "in the data: URL")
        if parsed.scheme in ("http", "https"):
            check = None if settings.allow_private_urls else refuse_private
            return decode(fetch(url, check_address=check), url)
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else url)
        if settings.allow_local_dir is None:
            raise RequestError("local image paths are refused; start the server with --allow-local-dir DIR",
                               code="invalid_image_url")
        root = Path(settings.allow_local_dir).resolve()
        if root != path.resolve() and root not in path.resolve().parents:
            raise RequestError(f"{path} is not beneath the allowed folder", code="invalid_image_url")
        return decode(read_local(path), str(path))
    except RequestError:
        raise
    except OvphiError as error:
        raise RequestError(str(error), code="invalid_image") from None


def conversation_of(request, settings):
    """The request's messages as a Conversation (images decoded, counted against settings.max_images), after
    a system message describing the tools the answer may call; earlier tool calls and results as text."""
    conversation = Conversation()
    if chosen_tools(request.tools, request.tool_choice):
        conversation.add("system", tools_prompt(request.tools, request.tool_choice))
    images = 0
    for index, message in enumerate(request.messages):
        parts = []
        content = message.content if message.content is not None else ""
        for part in [content] if isinstance(content, str) else content:
            text = part if isinstance(part, str) else part.text
            if text is not None and not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:  # a lone surrogate: JSON can carry it, no tokenizer can read it
                    raise RequestError("the text is not valid Unicode (a lone surrogate such as \\ud800)",
                                       param=f"messages[{index}].content") from None
            if isinstance(part, str):
                parts.append(part)
            elif part.type == "text":
                parts.append(part.text)
            else:
                images += 1
                if images > settings.max_images:
                    raise RequestError(f"more than {settings.max_images} images in one request",
                                       param=f"messages[{index}].content", code="too_many_images")
                if message.role != "user":
                    raise RequestError("only user messages may hold images", param=f"messages[{index}].content")
                parts.append(ImagePart(read_image_url(part.image_url.url, settings), part.image_url.url[:100]))
        for number, call in enumerate(message.tool_calls or []):
            try:
                parts.append(call_text(call.function.name, json.loads(call.function.arguments)))
            except ValueError:
                raise RequestError("the arguments of an earlier tool call are not JSON",
                                   param=f"messages[{index}].tool_calls[{number}].function.arguments") from None
        if message.role == "tool":
            parts = [tool_result_text(message.tool_call_id, "".join(parts))]
        role = {"developer": "system", "tool": "user"}.get(message.role, message.role)
        conversation.add(role, *parts)
    if conversation.messages[-1].role == "assistant":
        raise RequestError("continuing an assistant message (a prefill) is not supported yet: end with a user or"
                           " system message", param=f"messages[{len(request.messages) - 1}].role")
    return conversation


def generation_of(request, settings):
    """GenerationConfig of a request; the API's defaults where it says nothing (temperature 1 as OpenAI's)."""
    if request.n != 1:
        raise RequestError("only n = 1 is supported", param="n")
    if request.stream_options is not None and not request.stream:
        raise RequestError("stream_options is only allowed when stream is true", param="stream_options")
    stops = [request.stop] if isinstance(request.stop, str) else request.stop or []
    if len(stops) > 4:
        raise RequestError("stop takes at most 4 sequences", param="stop")
    max_tokens = request.max_completion_tokens or request.max_tokens or settings.max_tokens
    grammar, logit_bias, logprobs = answer_grammar(request), logit_bias_of(request), logprobs_of(request)
    try:
        return GenerationConfig(max_new_tokens=min(max_tokens, settings.max_tokens),
                                temperature=settings.temperature if request.temperature is None else request.temperature,
                                top_p=1.0 if request.top_p is None else request.top_p,
                                seed=None if request.seed is None else request.seed % SEEDS,
                                ignore_eos=request.ignore_eos, grammar=grammar, logit_bias=logit_bias,
                                presence_penalty=request.presence_penalty or 0.0,
                                frequency_penalty=request.frequency_penalty or 0.0, logprobs=logprobs,
                                stop=tuple(stop for stop in stops if stop))  # an empty one stops nothing
    except OvphiError as error:
        raise RequestError(str(error)) from None


def logit_bias_of(request):
    """{token id: bias} of the request's logit_bias, whose keys are token ids written as strings (OpenAI's)."""
    bias = {}
    for key, value in (request.logit_bias or {}).items():
        if not key.isdigit():
            raise RequestError(f"logit_bias keys are token ids, not {key!r}", param="logit_bias")
        if not -100 <= value <= 100:
            raise RequestError(f"logit_bias values are -100 to 100, not {value}", param="logit_bias")
        bias[int(key)] = value
    return bias


def answer_grammar(request):
    """The grammar the request constrains its answer to: tool calls' or response_format's (None: free text)."""
    if request.tool_choice not in (None, "none") and not request.tools:
        raise RequestError("tool_choice is only allowed when tools are given", param="tool_choice")
    if request.tool_choice not in (None, "auto", "none", "required") and not chosen_tools(request.tools,
                                                                                        request.tool_choice):
        raise RequestError(f"tool_choice names {request.tool_choice.function.name!r}, which is not among the tools",
                           param="tool_choice")
    try:
        calls = tool_grammar(request.tools, request.tool_choice)
    except OvphiError as error:
        raise RequestError(str(error), param="tools") from None
    if calls and (request.response_format or {}).get("type", "text") != "text":
        raise RequestError("response_format together with tools is not supported: give one of them",
                           param="response_format", code="unsupported_parameter")
    return calls or format_grammar(request.response_format)


def format_grammar(response_format):
    """The grammar a response_format constrains the answer to: None for text, any JSON object for json_object,
    JSON valid against the given schema for json_schema (constrained whether or not `strict` is set)."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return schema_grammar('{"type": "object"}')
    if kind != "json_schema":
        raise RequestError(f"response_format type {kind!r} is not one of text, json_object, json_schema",
                           param="response_format.type")
    described = response_format.get("json_schema")
    if not isinstance(described, dict) or not isinstance(described.get("schema", {}), dict):
        raise RequestError("response_format.json_schema must be an object whose schema is an object",
                           param="response_format.json_schema")
    try:
        return schema_grammar(json.dumps(described.get("schema", {})))
    except OvphiError as error:
        raise RequestError(str(error), param="response_format.json_schema.schema") from None


def logprobs_of(request):
    """GenerationConfig.logprobs of a request: None, or how many alternatives each answer token comes with."""
    if request.top_logprobs is not None and not request.logprobs:
        raise RequestError("top_logprobs is only allowed when logprobs is true", param="top_logprobs")
    if request.top_logprobs is not None and not 0 <= request.top_logprobs <= MAX_TOP_LOGPROBS:
        raise RequestError(f"top_logprobs must be 0 to {MAX_TOP_LOGPROBS}, not {request.top_logprobs}",
                           param="top_logprobs")
    return (request.top_logprobs or 0) if request.logprobs else None
