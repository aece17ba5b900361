"""Pure Chat Completions ⇄ Anthropic Messages ⇄ OpenAI Responses translation (no I/O).

Modules: ``anthropic_to_openai`` (Anthropic caller, OpenAI upstream),
``openai_to_anthropic`` (OpenAI caller, Anthropic upstream), ``responses_to_chat`` and
``chat_stream_to_responses`` (Responses caller, Chat upstream), ``responses_to_messages`` and
``messages_stream_to_responses`` (Responses caller, Anthropic upstream), ``responses_items`` and
``responses_stream`` (their shared tools map, items and event writer), ``usage``,
``tokens`` (count_tokens emulation), ``toolnames``, ``sse``, ``errors``.
"""

from .anthropic_to_openai import (
    ChatStreamToMessages,
    chat_response_to_messages,
    messages_request_to_chat,
)
from .errors import TranslationError
from .openai_to_anthropic import (
    MessagesStreamToChat,
    chat_request_to_messages,
    messages_response_to_chat,
)
from .tokens import count_message_tokens
from .toolnames import build_tool_name_map
from .usage import (
    Usage,
    usage_from_anthropic,
    usage_from_openai,
    usage_to_anthropic,
    usage_to_openai,
)

__all__ = [
    "ChatStreamToMessages",
    "MessagesStreamToChat",
    "TranslationError",
    "Usage",
    "build_tool_name_map",
    "chat_request_to_messages",
    "chat_response_to_messages",
    "count_message_tokens",
    "messages_request_to_chat",
    "messages_response_to_chat",
    "usage_from_anthropic",
    "usage_from_openai",
    "usage_to_anthropic",
    "usage_to_openai",
]
