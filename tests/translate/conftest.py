"""Fixtures for the translation tests (data and harnesses live in ``shapes.py``)."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # makes `tests.translate.shapes` importable
    sys.path.insert(0, _ROOT)

from tests.translate.shapes import (  # noqa: E402
    CLAUDE_CODE_REQUEST,
    OPENAI_SDK_REQUEST,
    run_anthropic_sdk,
    run_openai_sdk,
)


@pytest.fixture
def claude_code_request() -> dict[str, Any]:
    return copy.deepcopy(CLAUDE_CODE_REQUEST)


@pytest.fixture
def openai_sdk_request() -> dict[str, Any]:
    return copy.deepcopy(OPENAI_SDK_REQUEST)


@pytest.fixture(scope="session")
def anthropic_sdk() -> Callable[[Iterable[tuple[str, dict[str, Any]]]], Any]:
    return run_anthropic_sdk


@pytest.fixture(scope="session")
def openai_sdk() -> Callable[..., Any]:
    return run_openai_sdk
