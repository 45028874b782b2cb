"""C-STORE statuses → attempt kinds, and the backoff schedule."""

from __future__ import annotations

import pytest

from archive.forward.config import RetryPolicy
from archive.forward.model import AttemptKind
from archive.forward.retry import classify_store_status, next_delay


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (0x0000, AttemptKind.COMPLETED),
        (0xB000, AttemptKind.WARNING),  # coercion of data elements
        (0xB007, AttemptKind.WARNING),  # data set does not match SOP class (warning)
        (0x0107, AttemptKind.WARNING),  # attribute list error
        (0xA700, AttemptKind.RETRY),  # out of resources
        (0xA7FF, AttemptKind.RETRY),
        (0x0110, AttemptKind.RETRY),  # processing failure
        (0xA900, AttemptKind.FAILED),  # data set does not match SOP class
        (0xC000, AttemptKind.FAILED),  # cannot understand
        (0xC123, AttemptKind.FAILED),
        (0x0122, AttemptKind.FAILED),  # SOP class not supported
        (0x0124, AttemptKind.FAILED),  # not authorised
        (None, AttemptKind.RETRY),  # no response
    ],
)
def test_store_statuses_are_classified(status: int | None, kind: AttemptKind) -> None:
    assert classify_store_status(status) is kind


def test_network_errors_retry_and_permanent_rejections_fail() -> None:
    assert classify_store_status(None, network_error=True) is AttemptKind.RETRY
    assert classify_store_status(0x0000, network_error=True) is AttemptKind.RETRY
    assert classify_store_status(None, permanent_rejection=True) is AttemptKind.FAILED


def test_the_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(base_s=30.0, multiplier=2.0, max_delay_s=200.0, max_attempts=10)
    assert [next_delay(policy, n) for n in range(1, 7)] == [30.0, 60.0, 120.0, 200.0, 200.0, 200.0]
    flat = RetryPolicy(base_s=5.0, multiplier=1.0, max_delay_s=5.0)
    assert next_delay(flat, 1_000_000) == 5.0
    huge = RetryPolicy(base_s=1.0, multiplier=1e300, max_delay_s=3600.0)
    assert next_delay(huge, 50) == 3600.0
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        next_delay(policy, 0)
