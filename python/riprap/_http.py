"""Retry-After header values (RFC 9110 §10.2.3): a number of seconds or an HTTP date.

Shared by both backends: the Rust engine calls `parse_retry_after` for a header string it found.
"""

from __future__ import annotations

import email.utils
import time

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str) -> float | None:
    """Seconds to wait for a Retry-After value, or None if it cannot be read.

    A number of seconds is used as is (negative values become 0). An HTTP date is turned into a
    delay with the wall clock, once. Anything else is ignored (the backoff applies).
    """
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # noqa: PLR0124 - NaN check
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
