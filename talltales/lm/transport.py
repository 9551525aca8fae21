"""Talking to an OpenAI-compatible server: where the API key comes from, whether a server is local (free), and
our retry loop.

Retries are ours, not the SDK's (its ``max_retries`` is set to 0): exponential backoff with jitter on 429,
408/409, 5xx, connection errors and timeouts, up to ``spec.max_retries`` retries, then a clear
:class:`OpenAIBackendError`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import time
from typing import Any, Callable
from urllib.parse import urlparse

from .base import ModelSpec

log = logging.getLogger(__name__)

#: Placeholder key sent to local servers that need none.
LOCAL_PLACEHOLDER_KEY = "EMPTY"


class OpenAIBackendError(RuntimeError):
    """A request to an OpenAI-compatible server failed for good (after retries, or not retryable)."""


def is_local_url(base_url: str | None) -> bool:
    """True when ``base_url`` points at this machine (localhost, 127.0.0.0/8, ::1): a free, local server."""
    if not base_url:
        return False  # the SDK default: api.openai.com
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(spec: ModelSpec) -> str:
    """The key from the environment variable named by ``spec.api_key_env`` (the value is never logged)."""
    key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
    if key:
        return key
    if is_local_url(spec.base_url):
        return LOCAL_PLACEHOLDER_KEY
    where = spec.base_url or "the default OpenAI endpoint"
    if spec.api_key_env:
        raise OpenAIBackendError(
            f"model {spec.name!r}: environment variable {spec.api_key_env} (named by 'api_key_env') is unset "
            f"or empty; export it with the API key for {where}"
        )
    raise OpenAIBackendError(
        f"model {spec.name!r}: no 'api_key_env' in its config entry; name the environment variable that "
        f"holds the API key for {where}"
    )


def _retry_after(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None
    return None


def with_retries(spec: ModelSpec, what: str, fn: Callable[[], Any], base_delay: float, max_delay: float) -> Any:
    """Run ``fn`` (a request through the SDK) with our retry loop; raise :class:`OpenAIBackendError` when it fails
    for good. The delay before retry n is ``min(max_delay, base_delay * 2**n)`` times a random factor in
    [0.5, 1.5], at least any Retry-After the server sent (capped at ``max_delay``)."""
    import openai as oa  # the SDK (absolute import)

    attempts = spec.max_retries + 1
    for attempt in range(attempts):
        try:
            return fn()
        except oa.APIConnectionError as e:  # includes APITimeoutError
            reason, retryable = f"{type(e).__name__}: {e}", True
            err = e
        except oa.APIStatusError as e:
            code = e.status_code
            reason, retryable = f"HTTP {code}: {e.message}", code in (408, 409, 429) or code >= 500
            err = e
        if not retryable:
            raise OpenAIBackendError(f"model {spec.name!r}: {what} failed ({reason})") from err
        if attempt == attempts - 1:
            raise OpenAIBackendError(
                f"model {spec.name!r}: {what} failed after {attempts} attempt(s) "
                f"(max_retries={spec.max_retries}); last error: {reason}"
            ) from err
        delay = min(max_delay, base_delay * 2**attempt) * random.uniform(0.5, 1.5)
        hinted = _retry_after(err)
        if hinted is not None:
            delay = max(delay, min(hinted, max_delay))
        log.warning(
            "%s: %s failed (%s); retry %d/%d in %.1fs",
            spec.name, what, reason, attempt + 1, attempts - 1, delay,
        )
        time.sleep(delay)
    raise AssertionError("unreachable")


__all__ = ["LOCAL_PLACEHOLDER_KEY", "OpenAIBackendError", "is_local_url", "resolve_api_key", "with_retries"]
