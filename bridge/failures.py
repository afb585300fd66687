"""What a log line may say: of an unexpected exception its type and frames, never its text;
of a child, no identity or student number (the Redacting filter, for every record).

An exception's message can quote the values it refused: pydantic and asyncpg echo the
input, and an unmasked G number is an identity number. Type and frames say where it broke,
which is what an engineer needs; the data stays out of the logs.
"""

from __future__ import annotations

import logging
import traceback

from bridge.domain.personal_data import redact


def described(exc: BaseException) -> str:
    """The exception's type, its causes' types, and its frames (innermost last)."""
    kinds = [type(exc).__name__]
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        kinds.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    head = kinds[0] + "".join(f" (from {kind})" for kind in kinds[1:])
    return f"{head}\n{frames}" if frames else head


def log_failure(logger: logging.Logger, message: str, *args: object, exc: BaseException) -> None:
    """``logger.error(message: <type> + frames)``: the safe stand-in for ``log.exception``."""
    logger.error(message + ": %s", *args, described(exc))


class Redacting(logging.Filter):
    """Takes identity numbers and student numbers out of a log record, whatever logged it.

    The message is formatted and redacted once (its arguments dropped); an exception
    attached to the record (``log.exception``, a library's ``exc_info=True``) is replaced
    by its type and frames (``described``): its text can quote the values it refused.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "xueji_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} (unformattable arguments)"
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {described(record.exc_info[1])}"
            record.exc_info, record.exc_text = None, None
        elif record.exc_text:
            message = f"{message}\n{record.exc_text}"
            record.exc_text = None
        record.msg, record.args = redact(message), ()
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.xueji_redacted = True
        return True


_INSTALLED: list[object] = []


def redact_logs() -> None:
    """Every log record of this process, from any logger to any handler (present or added
    later, pytest's included), is redacted as it is made. Idempotent."""
    if _INSTALLED:
        return
    make = logging.getLogRecordFactory()
    redacting = Redacting()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _INSTALLED.append(factory)
