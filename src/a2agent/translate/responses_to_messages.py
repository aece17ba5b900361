"""Caller speaks OpenAI Responses, upstream speaks Anthropic Messages.

* :func:`responses_request_to_messages` — request body (and the :class:`ToolMap` for the way back).
* :func:`messages_response_to_responses` — non-streaming answer.
* The stream: :class:`~a2agent.translate.messages_stream_to_responses.MessagesStreamToResponses`.

Request choices:

* ``instructions`` and every ``developer``/``system`` message → the top-level ``system``
  (Messages has no system turn inside the history), joined with blank lines.
* Prompt caching (``prompt_cache_key`` has no Messages equivalent): cache breakpoints on the
  system prompt and on the newest user block, so each request of an agent loop reads the
  previous one's prefix from the cache.
* Consecutive call items (and the assistant text and reasoning before them) → ONE assistant
  message with ``tool_use`` blocks; their outputs → ONE user message of ``tool_result`` blocks
  (a user message right after joins it: roles must alternate).
* A ``reasoning`` item whose ``encrypted_content`` carries an Anthropic signature → a
  ``thinking`` block (``redacted:<data>`` → ``redacted_thinking``); one without (it came from
  a Chat upstream) is dropped: Anthropic refuses thinking it did not sign.
* ``max_tokens`` is required: ``max_output_tokens``, else the model's maximum output, else
  :data:`DEFAULT_MAX_TOKENS`. ``reasoning.effort`` → ``thinking.budget_tokens`` on reasoning
  channels, leaving at least :data:`ANSWER_ROOM` tokens for the answer — and not at all when
  the current tool loop has an assistant turn without its signed thinking (Anthropic refuses
  that history with thinking on).
* ``temperature`` and ``top_p`` are never sent together (several Anthropic models refuse the
  pair); ``temperature`` wins. Neither is sent with thinking on.
* ``text.format`` (``codex exec --output-schema``) → an instruction appended to ``system``,
  as the Chat → Messages translator does.
* ``tool_choice``: auto/required/none/{function} → ``{type: auto|any|none|tool}``;
  ``parallel_tool_calls: false`` → ``disable_parallel_tool_use``; dropped without tools.
"""

from __future__ import annotations

from typing import Any

from ._json import dumps, loads
from .errors import TranslationError
from .ids import new_tool_use_id
from .openai_to_anthropic import JSON_OBJECT_INSTRUCTION, JSON_SCHEMA_INSTRUCTION
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
from .responses_to_chat import CALLS, OUTPUTS, refuse_unsupported
from .usage import usage_from_anthropic

DEFAULT_MAX_TOKENS = 8192
ANSWER_ROOM = 4096
THINKING_BUDGETS = {"low": 2048, "medium": 8192, "high": 16384}
REDACTED = "redacted:"
EPHEMERAL = {"type": "ephemeral"}


def responses_request_to_messages(body: dict[str, Any], *, upstream_model: str, reasoning: bool = False,
                                  max_output: int | None = None) -> tuple[dict[str, Any], ToolMap]:
    refuse_unsupported(body)
    items = input_items(body)
    tmap = build_tool_map(body.get("tools"), items)
    system: list[str] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        system.append(body["instructions"])
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input.{i}"
        kind = item_type(item)
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                system.extend(t for t in message_texts(item.get("content"), where) if t)
            elif role == "assistant":
                _push(messages, "assistant", [{"type": "text", "text": t}
                                              for t in message_texts(item.get("content"), where) if t])
            elif role == "user":
                _push(messages, "user", _user_blocks(item.get("content"), where))
            else:
                raise TranslationError(f"{where}.role: unknown role {role!r}", f"{where}.role")
        elif kind == "reasoning":
            block = _thinking_block(item)
            if block is not None:
                _push(messages, "assistant", [block])
        elif kind in CALLS:
            _push(messages, "assistant", [_tool_use(item, tmap, where)])
        elif kind in OUTPUTS:
            _push(messages, "user", [_tool_result(item, where)])
        elif kind == "item_reference":
            raise TranslationError(f"{where}: item_reference needs stored responses, which this gateway "
                                   "does not keep; send the item itself", where)
        else:
            raise TranslationError(f"{where}.type: input item type {kind!r} is not supported", f"{where}.type")
    if not messages:
        raise TranslationError("input: the request has no user input", "input")
    if messages[0]["role"] != "user":
        messages.insert(0, {"role": "user", "content": [{"type": "text", "text": "(continue)"}]})
    out: dict[str, Any] = {"model": upstream_model, "messages": messages}
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":  # as the Chat translator does
        schema = fmt.get("schema")
        system.append(JSON_SCHEMA_INSTRUCTION + dumps(schema if isinstance(schema, dict) else {}))
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)
    if system:
        out["system"] = [{"type": "text", "text": "\n\n".join(system), "cache_control": EPHEMERAL}]
    _cache_last_turn(messages)
    limit = body.get("max_output_tokens")
    max_tokens = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else (
        max_output or DEFAULT_MAX_TOKENS)
    if max_output:
        max_tokens = min(max_tokens, max_output)
    effort = efforts(body["reasoning"].get("effort") if isinstance(body.get("reasoning"), dict) else None)
    thinking = False
    if reasoning and effort:
        budget = THINKING_BUDGETS[effort]
        if not isinstance(limit, int):  # no caller limit: make room for the budget and the answer
            max_tokens = max(max_tokens, budget + ANSWER_ROOM)
            if max_output:
                max_tokens = min(max_tokens, max_output)
        budget = min(budget, max_tokens - ANSWER_ROOM)
        if budget >= 1024 and _thinking_allowed(messages):
            out["thinking"] = {"type": "enabled", "budget_tokens": budget}
            thinking = True
    out["max_tokens"] = max_tokens
    if not thinking:
        if isinstance(body.get("temperature"), (int, float)):
            out["temperature"] = min(max(body["temperature"], 0), 1)
        elif body.get("top_p") is not None:
            out["top_p"] = body["top_p"]
    if tmap.tools:
        out["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                        for t in tmap.tools]
        choice = _tool_choice(body.get("tool_choice"), tmap, thinking)
        if body.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        out["stream"] = True
    return out, tmap


def _cache_last_turn(messages: list[dict[str, Any]]) -> None:
    """A cache breakpoint on the newest user block: Codex re-sends the whole history every
    request, so the next request reads all of this one from the prompt cache."""
    last = messages[-1]
    if last["role"] == "user" and last["content"] and last["content"][-1].get("type") in (
            "text", "tool_result", "image"):
        last["content"][-1] = {**last["content"][-1], "cache_control": EPHEMERAL}


def _thinking_allowed(messages: list[dict[str, Any]]) -> bool:
    """Anthropic refuses thinking when an assistant turn of the current tool loop (since the
    last plain user message) uses tools without starting with its signed thinking — history
    from a turn without reasoning, or from another upstream."""
    start = 0
    for i, m in enumerate(messages):
        if m["role"] == "user" and any(b.get("type") != "tool_result" for b in m["content"]):
            start = i
    for m in messages[start:]:
        blocks = m["content"]
        if m["role"] == "assistant" and any(b.get("type") == "tool_use" for b in blocks) and \
                blocks[0].get("type") not in ("thinking", "redacted_thinking"):
            return False
    return True


def _push(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
        return
    messages.append({"role": role, "content": list(blocks)})


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content: must be a string or an array", f"{where}.content")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if part.get("text"):
                blocks.append({"type": "text", "text": str(part["text"])})
        elif kind == "input_image":
            blocks.append(_image(part.get("image_url"), f"{where}.content.{j}"))
        else:
            raise TranslationError(f"{where}.content.{j}: content type {kind!r} is not supported by this "
                                   "model", f"{where}.content.{j}")
    return blocks


def _image(url: Any, where: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise TranslationError(f"{where}: only images given by URL or data URL are supported", where)
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media = head[5:].split(";")[0]
        if ";base64" not in head or not media:
            raise TranslationError(f"{where}: a data URL image must be base64", where)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _thinking_block(item: dict[str, Any]) -> dict[str, Any] | None:
    enc = item.get("encrypted_content")
    if not isinstance(enc, str) or not enc:
        return None
    if enc.startswith(REDACTED):
        return {"type": "redacted_thinking", "data": enc[len(REDACTED):]}
    return {"type": "thinking", "thinking": reasoning_text(item), "signature": enc}


def _tool_use(item: dict[str, Any], tmap: ToolMap, where: str) -> dict[str, Any]:
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
    try:
        value = loads(call_arguments(item))
    except ValueError:
        value = {}
    return {"type": "tool_use", "id": call_id, "name": name, "input": value if isinstance(value, dict) else {}}


def _tool_result(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.call_id: required", f"{where}.call_id")
    if item_type(item) == "tool_search_output":
        content: Any = dumps(item.get("tools") or [])
    else:
        output = item.get("output")
        if isinstance(output, list) and any(isinstance(p, dict) and p.get("type") == "input_image"
                                            for p in output):
            content = _user_blocks(output, f"{where}.output")
        else:
            content = output_text(output)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    if content in ("", []):
        block["content"] = "(no output)"
    return block


def _tool_choice(choice: Any, tmap: ToolMap, thinking: bool) -> dict[str, Any]:
    if choice == "none":
        return {"type": "none"}
    if thinking:  # Anthropic refuses forced tool use with thinking on
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and isinstance(
            choice.get("name"), str):
        kind = "custom" if choice["type"] == "custom" else "function"
        return {"type": "tool", "name": tmap.upstream_name(choice["name"], kind=kind)}
    return {"type": "auto"}


# --------------------------------------------------------------------------- response


def messages_response_to_responses(data: dict[str, Any], *, request: dict[str, Any], model: str,
                                   tool_map: ToolMap) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    texts: list[str] = []

    def flush_text() -> None:
        if texts:
            output.append(message_item("".join(texts)))
            texts.clear()

    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            flush_text()
            output.append(reasoning_item(str(block.get("thinking") or ""), block.get("signature") or None))
        elif kind == "redacted_thinking":
            flush_text()
            output.append(reasoning_item("", REDACTED + str(block.get("data") or "")))
        elif kind == "tool_use":
            flush_text()
            output.append(call_item(tool_map.ref(str(block.get("name") or "")),
                                    str(block.get("id") or new_tool_use_id()), dumps(block.get("input") or {})))
    flush_text()
    usage = usage_from_anthropic(data.get("usage"))
    incomplete = data.get("stop_reason") in ("max_tokens", "model_context_window_exceeded")
    return response_object(request, model=model, response_id=new_id("resp"), output=output,
                           status="incomplete" if incomplete else "completed",
                           incomplete_reason="max_output_tokens" if incomplete else None,
                           usage=usage_to_responses(usage))
