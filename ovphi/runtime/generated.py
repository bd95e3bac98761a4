"""The token ids the model generated for the answers it gave, so that a history sent back as text (a server's
client repeats the conversation in every request) is fed back to the model as exactly what it said: the text of
an answer does not always re-tokenize into the ids that made it (a broken UTF-8 sequence, a stop string cut
inside a token)."""
from collections import OrderedDict

from .conversation import Message
from .prompt import common_prefix

REMEMBERED = 64  # conversations; each holds only its messages' signatures and answer ids


def signature(message):
    """What identifies a message across requests: its role, its text (a client may send an answer back unstripped)
    and its images' content."""
    return (message.role, message.text.strip(), tuple(part.digest for part in message.images))


class GeneratedAnswers:
    """remember() each answered conversation; restore() gives a new one's assistant messages without ids the ids
    of the remembered conversation it repeats the most of (messages in order, answers as they were given)."""

    def __init__(self, size=REMEMBERED):
        self.size = size
        self.conversations = OrderedDict()  # signatures of all its messages -> the ids of each (None: not an answer)

    def remember(self, conversation, result):
        if result.finish_reason == "cancelled" or result.token_ids is None:
            return
        key = tuple(signature(message) for message in conversation.messages) + \
            (signature(Message("assistant", [result.answer])),)
        self.conversations[key] = [message.token_ids for message in conversation.messages] + [result.token_ids]
        self.conversations.move_to_end(key)
        while len(self.conversations) > self.size:
            self.conversations.popitem(last=False)

    def restore(self, conversation):
        asked = [signature(message) for message in conversation.messages]
        best, best_length = None, 0
        for key in reversed(self.conversations):  # the most recent first, among equally long matches
            length = common_prefix(key, asked)
            if length > best_length:
                best, best_length = key, length
        if best is None:
            return
        self.conversations.move_to_end(best)
        for message, ids in zip(conversation.messages[:best_length], self.conversations[best]):
            if message.role == "assistant" and message.token_ids is None:
                message.token_ids = ids
