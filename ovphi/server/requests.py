"""An API request -> a Conversation and a GenerationConfig: images from data: URLs, http(s) URLs (never to
private addresses unless allowed: server-side request forgery) and files beneath an allowed folder;
earlier answers matched against what the model generated, so their token ids (and the KV cache) are reused."""
import base64
import binascii
import ipaddress
import socket
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import OvphiError
from ..images import decode, fetch, read_local
from ..runtime import Conversation, GenerationConfig, ImagePart


class RequestError(OvphiError):
    """A request the server refuses: its status and OpenAI error code go with the message."""

    def __init__(self, message, status=400, code=None, param=None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def check_public(host):
    """Refuse a host that resolves to a loopback, private, link-local or reserved address."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise RequestError(f"cannot resolve image host {host}", code="invalid_image_url") from None
    for address in addresses:
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
            if not settings.allow_private_urls:
                check_public(parsed.hostname or "")
            return decode(fetch(url), url)
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
            if isinstance(part, str):
                parts.append(part)
            elif part.type == "text":
                parts.append(part.text or "")
            else:
                images += 1
                if images > settings.max_images:
                    raise RequestError(f"more than {settings.max_images} images in one request",
                                       param=f"messages[{index}].content", code="too_many_images")
                if message.role != "user":
                    raise RequestError("only user messages may hold images", param=f"messages[{index}].content")
                parts.append(ImagePart(read_image_url(part.image_url.url, settings), part.image_url.url[:100]))
        conversation.add(message.role, *parts)
    if conversation.messages[-1].role != "user":
        raise RequestError("the last message must be the user's", param="messages")
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
    max_tokens = request.max_completion_tokens or request.max_tokens or settings.max_tokens
    try:
        return GenerationConfig(max_new_tokens=min(max_tokens, settings.max_tokens),
                                temperature=settings.temperature if request.temperature is None else request.temperature,
                                top_p=1.0 if request.top_p is None else request.top_p, seed=request.seed,
                                ignore_eos=request.ignore_eos)
    except OvphiError as error:
        raise RequestError(str(error)) from None
