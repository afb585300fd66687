"""What a log line may say about an unexpected exception: its type and frames, never its text.

An exception's message can quote the values it refused: pydantic and asyncpg echo the
input, and an unmasked G number is an identity number. Type and frames say where it broke,
which is what an engineer needs; the data stays out of the logs.
"""

from __future__ import annotations

import logging
import traceback


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
