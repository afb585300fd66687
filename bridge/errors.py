"""The one error hierarchy of the bridge, grouped by what the caller must do.

- ``InputRefused``: the input breaks a contract; refuse it (HTTP 4xx, park the message).
- ``RetryLater``: a passing failure; try again (tenacity in-call, then a durable delay).
- ``NeedsOperator``: the rules forbid going on alone; set the case aside for a person.
- ``Conflict``: not in the state things are in (a run under way, another school's child).
- ``AccessDenied``: the caller may not (HTTP 401/403).
- ``StartRefused``: the deployment is not fit to start (the command exits 2, saying why).
- ``RecordFileGone`` / ``RecordFileDamaged``: a record file the bridge no longer has, or
  whose stored copy failed its integrity check (HTTP 410 / 500; never a byte of it sent).

The HTTP status of each family is decided in one place, bridge/api/problems.py.
"""

from __future__ import annotations

import datetime as dt


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    code = "bridge_error"


# --- refuse the input -------------------------------------------------------------------
class InputRefused(BridgeError):
    """The input breaks a contract and is refused with a reason."""

    code = "invalid"


class InvalidStudentNumber(InputRefused, ValueError):
    """A value is not a student number of any form in rules.md."""

    code = "invalid_student_number"


class NotFound(InputRefused):
    """Nothing the caller may see goes by that name: unknown, malformed and out of scope
    are answered alike, so that numbers cannot be probed."""

    code = "not_found"

    def __init__(self, message: str = "no such hand-over or school for this token") -> None:
        super().__init__(message)


class OutOfScope(NotFound):
    """A school asked for another school's children: answered as NotFound, audited as a
    refused attempt."""


class InvalidEvent(InputRefused):
    """A message is not an event of events.md."""

    code = "invalid_event"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


# --- not now ----------------------------------------------------------------------------
class Conflict(BridgeError):
    """The request cannot be done in the state things are in (HTTP 409)."""

    code = "conflict"


class ArrivalRefused(Conflict):
    """The registry says another school admitted the child than the one reporting."""

    code = "school_mismatch"


# --- retry later ------------------------------------------------------------------------
class RetryLater(BridgeError):
    """A transient failure: the same call may succeed later."""

    code = "retry_later"

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, url: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        # The base URL of the service that failed, for the setting an operator checks.
        self.url = url


class RegistryUnavailable(RetryLater):
    """A registry answered 429/5xx, timed out or dropped the connection."""

    code = "registry_unavailable"


class RegistryUnauthorized(RetryLater):
    """A registry refused our token (401/403): a deployment fault, retried slowly."""

    code = "registry_unauthorized"


class LeaseLost(RetryLater):
    """Another bridge instance took over this child; our result is discarded."""

    code = "lease_lost"


# --- give to an operator ----------------------------------------------------------------
class NeedsOperator(BridgeError):
    """The rules forbid going on without a person's decision."""

    code = "needs_operator"

    def __init__(self, message: str, **detail: str) -> None:
        super().__init__(message)
        self.detail = detail


# Errors tenacity retries inside one call before the hand-over falls back to a durable delay.
RETRYABLE: tuple[type[BaseException], ...] = (RegistryUnavailable,)


class IdentityConflict(NeedsOperator):
    """The registry holds this identity under another number (一人一号): never worked around."""

    code = "identity_conflict"


class AlreadyEnrolled(NeedsOperator):
    """The child already reported at a school; only an operator may undo that."""

    code = "already_enrolled"


class RegistryRejected(NeedsOperator):
    """The registry found the body invalid (422): our data or our reading of it is wrong."""

    code = "registry_rejected"


class FileRejected(NeedsOperator):
    """The registry refused the record file (digest mismatch or too large)."""

    code = "file_rejected"


class SchoolMismatch(NeedsOperator):
    """Another school admitted the child than the one reporting its arrival."""

    code = "school_mismatch"


class BadSourceFile(NeedsOperator):
    """The preschool's file does not match its claimed size or sha256: never handed over."""

    code = "bad_source_file"


class SourceFileMissing(NeedsOperator):
    """The preschool registry does not know the claimed record file (404)."""

    code = "source_file_missing"


class NotRegistered(BridgeError):
    """The registry holds no registration under that number: a fact the hand-over corrects."""

    code = "not_registered"


# --- access -----------------------------------------------------------------------------
class AccessDenied(BridgeError):
    """The caller may not do this; HTTP answers 401/403/404 by the subclass."""

    code = "access_denied"
    status = 403


class Unauthenticated(AccessDenied):
    """No token, or one we do not know (or revoked)."""

    code = "unauthenticated"
    status = 401


class TokenSealed(AccessDenied):
    """The token went unused for 180 days and is sealed until an operator unseals it."""

    code = "token_sealed"
    status = 401

    def __init__(self, message: str, *, sealed_now: str | None = None) -> None:
        super().__init__(message)
        # The id of a token this very request sealed, so the seal can be audited.
        self.sealed_now = sealed_now


class Forbidden(AccessDenied):
    """The token's role may not use this endpoint."""

    code = "forbidden"
    status = 403


# --- record files at rest ---------------------------------------------------------------
class StartRefused(BridgeError):
    """The deployment is not fit to start; the message names the setting or command that
    fixes it."""

    code = "start_refused"


class FileKeysInvalid(StartRefused):
    """The record files' key-encryption keys are missing, malformed or not the ones the
    database's files were wrapped with: the bridge refuses to start (never plaintext)."""

    code = "file_keys_invalid"


class RecordFilesInClear(StartRefused):
    """Record files stored before encryption are still in the clear: `xueji migrate` first."""

    code = "record_files_in_clear"


class RecordFileDamaged(BridgeError):
    """A stored record file failed authentication: changed, cut short or swapped at rest."""

    code = "record_file_damaged"


class RecordFileGone(BridgeError):
    """The record file was erased after its retention period (when, and why)."""

    code = "gone"

    def __init__(self, message: str, *, erased_at: dt.datetime, reason: str | None) -> None:
        super().__init__(message)
        self.erased_at = erased_at
        self.reason = reason
