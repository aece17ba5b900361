"""``GET /v1/codex/models``: model metadata for Codex CLI, so every gateway model gets Codex's
full tool set (the freeform ``apply_patch`` tool) instead of its fallback metadata.

Codex 0.171.0 fetches this when a provider sets ``model_catalog_url`` (it must share
``base_url``'s scheme, host and port; Codex sends the provider key as a Bearer token and
``?client_version=…``), caches it in ``$CODEX_HOME/models_cache.json``, and needs each entry's
``slug``, ``display_name``, ``supported_reasoning_levels``, ``shell_type``, ``visibility``,
``supported_in_api``, ``priority``, ``truncation_policy``, ``support_verbosity``,
``experimental_supported_tools`` and its instructions (``base_instructions``) — without one
of them the whole catalogue is refused and Codex falls back.
"""

from __future__ import annotations

from typing import Any

# Our own short system prompt for Codex sessions (Codex's tool descriptions carry the detail).
INSTRUCTIONS = """You are a coding agent working in the user's workspace through the tools you are given.

- Read the relevant code before changing it; follow the conventions you find.
- Make focused changes with the apply_patch tool; run commands with the shell tool to build, test and inspect.
- Prefer fast search tools (rg) and small, verifiable steps; check your work by running it.
- Keep the user informed with brief updates; finish with a concise summary of what changed and why.
- Never run destructive commands or touch files outside the task without the user's request."""

REASONING_LEVELS = [
    {"effort": "low", "description": "Faster answers, lighter reasoning"},
    {"effort": "medium", "description": "Balanced speed and reasoning"},
    {"effort": "high", "description": "Deeper reasoning for hard problems"},
]


def codex_model(model_id: str, context_window: int | None, priority: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "slug": model_id,
        "display_name": model_id,
        "description": "Served by the A2Agent gateway",
        "apply_patch_tool_type": "freeform",
        "shell_type": "shell_command",
        "supported_reasoning_levels": REASONING_LEVELS,
        "default_reasoning_level": "medium",
        "supports_reasoning_summaries": False,
        "support_verbosity": False,
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "visibility": "list",
        "supported_in_api": True,
        "priority": priority,
        "input_modalities": ["text", "image"],
        "supports_parallel_tool_calls": True,
        "experimental_supported_tools": [],
        "base_instructions": INSTRUCTIONS,
    }
    if context_window:
        entry["context_window"] = context_window
    return entry


def codex_catalog(models: list[Any]) -> dict[str, Any]:
    """``{"models": [...]}`` for the callable models (ModelEntry objects), in name order."""
    callable_models = sorted((m for m in models if m.protocols), key=lambda m: m.model_id)
    return {"models": [codex_model(m.model_id, m.context_window, i + 1) for i, m in enumerate(callable_models)]}
