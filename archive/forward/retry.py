"""What a forwarding attempt's outcome means, and when to try again: pure functions.

:func:`classify_store_status` maps a C-STORE response status (PS3.4 B.2.3,
PS3.7 C) or a failure to reach the destination to an :class:`AttemptKind`:

- ``0x0000`` → ``COMPLETED``;
- ``0xB000``-``0xBFFF`` and the warning statuses ``0x0001``, ``0x0107``, ``0x0116``
  → ``WARNING`` (stored, recorded as warning);
- no response (network error, timeout, aborted association), a transient
  association rejection, ``0xA700``-``0xA7FF`` (out of resources), ``0x0110``
  (processing failure: Orthanc's answer to a full disk) and ``0xFE00``
  (cancelled) → ``RETRY``;
- everything else (``0xA900``-``0xA9FF`` data set does not match the SOP class,
  ``0xC000``-``0xCFFF`` cannot understand, ``0x0122`` SOP class not supported,
  ``0x0124`` not authorised, a permanent association rejection) → ``FAILED``.

A destination's ``retry_permanent`` turns ``FAILED`` into a retry; that choice is
:meth:`archive.forward.store.ForwardStore.finish`'s, not this module's.
:func:`next_delay` is dcm4chee's schedule: ``base × multiplier^(n−1)``, capped.
"""

from __future__ import annotations

from archive.forward.config import RetryPolicy
from archive.forward.model import AttemptKind

#: Statuses outside 0xBxxx that PS3.7 defines as warnings of a C-STORE.
WARNING_STATUSES = frozenset({0x0001, 0x0107, 0x0116})
#: Failure statuses that can pass by themselves.
TRANSIENT_STATUSES = frozenset({0x0110, 0xFE00})


def classify_store_status(
    status: int | None, *, network_error: bool = False, permanent_rejection: bool = False
) -> AttemptKind:
    """The kind of outcome of one C-STORE attempt.

    Parameters
    ----------
    status : int or None
        The response's Status (0000,0900); ``None`` when no response came.
    network_error : bool
        The destination could not be reached, the association was aborted or
        rejected transiently, or a timeout passed.
    permanent_rejection : bool
        The association was rejected permanently (PS3.8 A-ASSOCIATE-RJ result 1).

    Returns
    -------
    AttemptKind
        ``COMPLETED``, ``WARNING``, ``RETRY`` or ``FAILED`` (see the module docstring).
    """
    if permanent_rejection:
        return AttemptKind.FAILED
    if network_error or status is None:
        return AttemptKind.RETRY
    if status == 0x0000:
        return AttemptKind.COMPLETED
    if 0xB000 <= status <= 0xBFFF or status in WARNING_STATUSES:
        return AttemptKind.WARNING
    if 0xA700 <= status <= 0xA7FF or status in TRANSIENT_STATUSES:
        return AttemptKind.RETRY
    return AttemptKind.FAILED


def next_delay(policy: RetryPolicy, attempts: int) -> float:
    """Seconds to wait before the next attempt after ``attempts`` failed ones.

    Parameters
    ----------
    policy : RetryPolicy
        The destination's backoff.
    attempts : int
        Attempts made so far (at least 1).

    Returns
    -------
    float
        ``min(base_s × multiplier^(attempts−1), max_delay_s)``.

    Raises
    ------
    ValueError
        If ``attempts`` is less than 1.
    """
    if attempts < 1:
        raise ValueError(f"next_delay: attempts must be at least 1, but got {attempts}")
    exponent = min(attempts - 1, 1024)  # past the cap long before; avoids float overflow
    try:
        delay = policy.base_s * policy.multiplier**exponent
    except OverflowError:
        return policy.max_delay_s
    return min(delay, policy.max_delay_s)
