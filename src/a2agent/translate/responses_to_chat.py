"""Caller speaks OpenAI Responses, upstream speaks OpenAI Chat Completions.

* :func:`responses_request_to_chat` — request body (and the :class:`ToolMap` for the way back).
* :func:`chat_response_to_responses` — non-streaming answer.
* The stream: :class:`~a2agent.translate.chat_stream_to_responses.ChatStreamToResponses`.

Request choices:

* ``instructions`` and ``developer``/``system`` messages → ``system`` messages in place
  (``developer`` is unknown to many Chat providers); consecutive ones are joined into one.
* Consecutive ``function_call`` / ``custom_tool_call`` / ``tool_search_call`` items (and the
  assistant text before them) → ONE assistant message with ``tool_calls``; each output → a
  ``tool`` message.
* ``reasoning`` items → ``reasoning_content`` on the next assistant message when the channel
  supports reasoning (DeepSeek-style), else dropped.
* ``tool_choice`` and ``parallel_tool_calls`` are dropped when no tool is left (Codex's
  compaction requests send ``tools: []`` with ``tool_choice: "auto"``).
* ``max_output_tokens`` → ``max_tokens`` (clamped to the model's maximum output when known);
  ``reasoning.effort`` → ``reasoning_effort`` (reasoning channels only); ``text.format`` →
  ``response_format``; ``store``, ``include``, ``prompt_cache_key``, ``client_metadata``,
  ``text.verbosity``, ``truncation`` and ``service_tier`` are dropped.
"""

from __future__ import annotations

from typing import Any

from ._json import dumps
from .errors import TranslationError
from .responses_items import (
    ToolMap,
    build_tool_map,
    call_arguments,
    call_item,
    efforts,
    input_items,
    item_type,
    message_item,
    message_texts,
    new_id,
    output_text,
    reasoning_item,
    reasoning_text,
    response_object,
    usage_to_responses,
)
from .usage import usage_from_openai

CALLS = ("function_call", "custom_tool_call", "tool_search_call")
OUTPUTS = ("function_call_output", "custom_tool_call_output", "tool_search_output")
UNSUPPORTED = ("previous_response_id", "background", "conversation")


def refuse_unsupported(body: dict[str, Any]) -> None:
    for name in UNSUPPORTED:
        if body.get(name):
            raise TranslationError(
                f"{name}: not supported by this gateway (it stores no responses); send the whole "
                "conversation in 'input' instead", name)


def responses_request_to_chat(body: dict[str, Any], *, upstream_model: str, reasoning: bool = False,
                              max_output: int | None = None) -> tuple[dict[str, Any], ToolMap]:
    refuse_unsupported(body)
    items = input_items(body)
    tmap = build_tool_map(body.get("tools"), items)
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    pending_reasoning: list[str] = []
    for i, item in enumerate(items):
        where = f"input.{i}"
        kind = item_type(item)
        if kind == "message":
            _message(messages, item, where, pending_reasoning if reasoning else None)
        elif kind == "reasoning":
            text = reasoning_text(item)
            if text:
                pending_reasoning.append(text)
        elif kind in CALLS:
            _call(messages, item, tmap, where, pending_reasoning if reasoning else None)
        elif kind in OUTPUTS:
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise TranslationError(f"{where}.call_id: required", f"{where}.call_id")
            content = dumps(item.get("tools") or []) if kind == "tool_search_output" else output_text(
                item.get("output"))
            messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        elif kind == "item_reference":
            raise TranslationError(f"{where}: item_reference needs stored responses, which this gateway "
                                   "does not keep; send the item itself", where)
        else:
            raise TranslationError(f"{where}.type: input item type {kind!r} is not supported", f"{where}.type")
    if not any(m["role"] != "system" for m in messages):
        raise TranslationError("input: the request has no user input", "input")
    out: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if tmap.tools:
        out["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                           "parameters": t.parameters}} for t in tmap.tools]
        choice = _tool_choice(body.get("tool_choice"), tmap)
        if choice is not None:
            out["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            out[name] = body[name]
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool):
        out["max_tokens"] = min(limit, max_output) if max_output else limit
    effort = efforts((body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict)
                     else None)
    if reasoning and effort:
        out["reasoning_effort"] = effort
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out, tmap


def _assistant(messages: list[dict[str, Any]], pending_reasoning: list[str] | None) -> dict[str, Any]:
    """The assistant message new assistant content joins (a new one after anything else)."""
    last = messages[-1] if messages else None
    if last is None or last["role"] != "assistant":
        last = {"role": "assistant", "content": None}
        messages.append(last)
    if pending_reasoning:
        last["reasoning_content"] = "\n\n".join(pending_reasoning)
        pending_reasoning.clear()
    return last


def _message(messages: list[dict[str, Any]], item: dict[str, Any], where: str,
             pending_reasoning: list[str] | None) -> None:
    role = item.get("role")
    content = item.get("content")
    if role in ("system", "developer"):
        text = "\n\n".join(message_texts(content, where))
        if messages and messages[-1]["role"] == "system":  # one system message per run: several
            messages[-1]["content"] += "\n\n" + text       # in a row break some chat templates
        else:
            messages.append({"role": "system", "content": text})
    elif role == "assistant":
        text = "\n\n".join(message_texts(content, where))
        msg = _assistant(messages, pending_reasoning)
        if msg.get("tool_calls"):  # text after calls in one turn starts a new message
            msg = {"role": "assistant", "content": None}
            messages.append(msg)
        msg["content"] = (msg["content"] + "\n\n" + text) if msg["content"] else text
    elif role == "user":
        messages.append({"role": "user", "content": _user_content(content, where)})
    else:
        raise TranslationError(f"{where}.role: unknown role {role!r}", f"{where}.role")


def _user_content(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content: must be a string or an array", f"{where}.content")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise TranslationError(f"{where}.content.{j}: only images given by URL or data URL are "
                                       "supported (not file_id)", f"{where}.content.{j}")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise TranslationError(f"{where}.content.{j}: content type {kind!r} is not supported by this "
                                   "model", f"{where}.content.{j}")
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _call(messages: list[dict[str, Any]], item: dict[str, Any], tmap: ToolMap, where: str,
          pending_reasoning: list[str] | None) -> None:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.call_id: required", f"{where}.call_id")
    kind = item_type(item)
    if kind == "tool_search_call":
        name = tmap.upstream_name("tool_search", kind="tool_search")
    else:
        raw_name = item.get("name")
        if not isinstance(raw_name, str):
            raise TranslationError(f"{where}.name: required", f"{where}.name")
        ns = item.get("namespace") if isinstance(item.get("namespace"), str) else None
        name = tmap.upstream_name(raw_name, ns, "custom" if kind == "custom_tool_call" else "function")
    msg = _assistant(messages, pending_reasoning)
    msg.setdefault("tool_calls", []).append(
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": call_arguments(item)}})


def _tool_choice(choice: Any, tmap: ToolMap) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and isinstance(
            choice.get("name"), str):
        kind = "custom" if choice["type"] == "custom" else "function"
        return {"type": "function", "function": {"name": tmap.upstream_name(choice["name"], kind=kind)}}
    return None  # allowed_tools, hosted tools: let the model choose


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        schema = {"name": fmt.get("name") or "output", "schema": fmt.get("schema") or {}}
        if isinstance(fmt.get("strict"), bool):
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None


# --------------------------------------------------------------------------- response


def chat_response_to_responses(data: dict[str, Any], *, request: dict[str, Any], model: str,
                               tool_map: ToolMap) -> dict[str, Any]:
    choices = data.get("choices") or []
    choice = choices[0] if choices else {}
    msg = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    thought = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(thought, str) and thought:
        output.append(reasoning_item(thought, None))
    content = msg.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(content))
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        args = args if isinstance(args, str) else dumps(args or {})
        output.append(call_item(tool_map.ref(str(fn.get("name") or "")), str(tc.get("id") or new_id("call")),
                                args))
    usage = usage_from_openai(data.get("usage"))
    details = (data.get("usage") or {}).get("completion_tokens_details") or {}
    raw_tokens = details.get("reasoning_tokens") if isinstance(details, dict) else None
    reasoning_tokens: int = raw_tokens if isinstance(raw_tokens, int) else 0
    length = choice.get("finish_reason") == "length"
    return response_object(request, model=model, response_id=new_id("resp"), output=output,
                           status="incomplete" if length else "completed",
                           incomplete_reason="max_output_tokens" if length else None,
                           usage=usage_to_responses(usage, reasoning_tokens))
