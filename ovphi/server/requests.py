"""An API request -> a Conversation and a GenerationConfig: images from data: URLs, http(s) URLs (never to
private addresses unless allowed: server-side request forgery) and files beneath an allowed folder;
earlier answers matched against what the model generated, so their token ids (and the KV cache) are reused."""
import base64
import binascii
import ipaddress
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import OvphiError
from ..images import decode, fetch, read_local
from ..runtime import Conversation, GenerationConfig, ImagePart
from ..runtime.config import SEEDS
from ..runtime.constraint import grammar_of


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
    """The request's messages as a Conversation (images decoded, counted against settings.max_images)."""
    conversation = Conversation()
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
        conversation.add("system" if message.role == "developer" else message.role, *parts)
    if conversation.messages[-1].role == "assistant":
        raise RequestError("continuing an assistant message (a prefill) is not supported yet: end with a user or"
                           " system message", param=f"messages[{len(request.messages) - 1}].role")
    return conversation


def signature(message):
    """What identifies a message across requests: its role, its text and its images' content."""
    return (message.role, message.text, tuple(part.digest for part in message.images))


def reuse_generated_ids(conversation, served):
    """Give each assistant message of `conversation` the token ids the model generated for it, where the
    conversation repeats the one `served` last (messages in order, answers as they were given)."""
    for new, old in zip(conversation.messages, served.messages if served else []):
        if signature(new) != signature(old):
            return
        new.token_ids = old.token_ids


def generation_of(request, settings):
    """GenerationConfig of a request; the API's defaults where it says nothing (temperature 1 as OpenAI's)."""
    if request.n != 1:
        raise RequestError("only n = 1 is supported", param="n")
    refuse_unsupported(request)
    if request.stream_options is not None and not request.stream:
        raise RequestError("stream_options is only allowed when stream is true", param="stream_options")
    if isinstance(request.stop, list) and len(request.stop) > 4:
        raise RequestError("stop takes at most 4 sequences", param="stop")
    max_tokens = request.max_completion_tokens or request.max_tokens or settings.max_tokens
    json_schema = json_schema_of(request.response_format)
    try:
        return GenerationConfig(max_new_tokens=min(max_tokens, settings.max_tokens),
                                temperature=settings.temperature if request.temperature is None else request.temperature,
                                top_p=1.0 if request.top_p is None else request.top_p,
                                seed=None if request.seed is None else request.seed % SEEDS,
                                ignore_eos=request.ignore_eos, json_schema=json_schema)
    except OvphiError as error:
        raise RequestError(str(error)) from None


def json_schema_of(response_format):
    """The JSON schema (as text) a response_format constrains the answer to: None for text, any object for
    json_object, the given schema for json_schema (constrained whether or not `strict` is set)."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return '{"type": "object"}'
    if kind != "json_schema":
        raise RequestError(f"response_format type {kind!r} is not one of text, json_object, json_schema",
                           param="response_format.type")
    described = response_format.get("json_schema")
    if not isinstance(described, dict) or not isinstance(described.get("schema", {}), dict):
        raise RequestError("response_format.json_schema must be an object whose schema is an object",
                           param="response_format.json_schema")
    schema = json.dumps(described.get("schema", {}))
    try:
        grammar_of(schema)
    except OvphiError as error:
        raise RequestError(str(error), param="response_format.json_schema.schema") from None
    return schema


def refuse_unsupported(request):
    """A 400 naming the first parameter that asks for what this server cannot do yet (never silently ignored)."""
    asked = {"logprobs": bool(request.logprobs), "top_logprobs": request.top_logprobs is not None,
             "logit_bias": bool(request.logit_bias), "presence_penalty": bool(request.presence_penalty),
             "frequency_penalty": bool(request.frequency_penalty),
             "tools": bool(request.tools), "tool_choice": request.tool_choice not in (None, "none")}
    for name, given in asked.items():
        if given:
            raise RequestError(f"{name} is not supported by this server yet", param=name,
                               code="unsupported_parameter")
