"""How a ``xueji`` command ends: an exit code, and for a failure one sentence on stderr.

The sentence says what failed, which setting or URL is concerned (passwords masked) and
what to do; a traceback only with ``--debug`` (or XUEJI_DEBUG=1). An exception nobody
expected is named by its type alone: its message may quote a child's data.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydantic import ValidationError

from bridge.domain.personal_data import redact
from bridge.errors import (
    AccessDenied,
    Conflict,
    InputRefused,
    NotFound,
    RegistryUnauthorized,
    RegistryUnavailable,
    StartRefused,
)
from bridge.settings import Settings


class Exit(enum.IntEnum):
    """The exit codes of every ``xueji`` command (README, ``xueji --help``)."""

    OK = 0
    FAILED = 1  # the command could not do what was asked (nothing by that id, refused, ...)
    USAGE = 2  # the arguments are wrong (argparse's own code)
    UNAVAILABLE = 3  # a service is unreachable or busy: the same command may work later
    CONFIGURATION = 4  # a setting is missing or wrong: fix it first
    INTERRUPTED = 130  # Ctrl-C, as shells count it


EXIT_CODES_HELP = """exit codes:
  0  done
  1  the command could not do what was asked (the sentence on stderr says why)
  2  wrong arguments
  3  a service (database, broker, a registry) is unreachable or busy: try again later
  4  a setting is missing or wrong (the sentence names it)
  --debug (or XUEJI_DEBUG=1) adds the traceback to a failure's sentence"""


class CommandFailed(Exception):
    """A command's own refusal: *sentence* is printed as it is, with *code*."""

    def __init__(self, sentence: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.code = code


@dataclass(frozen=True)
class Ending:
    """What a failure comes to: the exit code and the sentence."""

    code: Exit
    sentence: str


_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/,\s]*):[^@/\s]*@", re.I)
_PASSWORD_PARAM = re.compile(r"(?P<key>password=)[^&\s]*", re.I)


def redacted(url: str) -> str:
    """*url* with every password masked (a cluster's node list, libpq's ``password=``)."""
    url = _USERINFO.sub(r"\g<scheme>\g<user>:***@", url)
    return _PASSWORD_PARAM.sub(r"\g<key>***", url)


def debugging(argv_debug: bool = False) -> bool:
    """Whether a failure shows its traceback: ``--debug`` or XUEJI_DEBUG=1."""
    return argv_debug or os.environ.get("XUEJI_DEBUG", "").strip().lower() in ("1", "true", "yes")


# --- which service, which setting -------------------------------------------------------
@dataclass(frozen=True)
class _Service:
    name: str
    setting: str
    field: str
    todo: str


_DATABASE = _Service(
    "the database", "BRIDGE_DATABASE_URL", "database_url",
    "check that PostgreSQL is running and reachable and that the setting points to it",
)  # fmt: skip
_BROKER = _Service(
    "the message broker", "BRIDGE_AMQP_URL", "amqp_url",
    "check that RabbitMQ is running and reachable and that the setting points to it",
)  # fmt: skip
_REGISTRIES = (
    _Service(
        "the primary registry", "BRIDGE_REGISTRY_URL", "registry_url",
        "check that it is up and reachable from here and that the setting is its address",
    ),
    _Service(
        "the preschool registry", "BRIDGE_PRESCHOOL_URL", "preschool_url",
        "check that it is up and reachable from here and that the setting is its address",
    ),
)  # fmt: skip
_TOKENS = {"registry_url": "BRIDGE_REGISTRY_TOKEN", "preschool_url": "BRIDGE_PRESCHOOL_TOKEN"}


def _configured(field: str) -> str:
    """A setting's value as the command saw it (the default when the settings are invalid)."""
    try:
        return str(getattr(Settings(), field))
    except ValidationError:
        default = Settings.model_fields[field].default
        return os.environ.get(f"BRIDGE_{field.upper()}", str(default))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _service_of(exc: BaseException) -> _Service | None:
    """Which service a connection failure came from: the library that raised it (the
    innermost frame of a library or adapter that speaks to one)."""
    for each in _chain(exc):
        module = type(each).__module__
        if module.startswith("asyncpg"):
            return _DATABASE
        if module.startswith(("aio_pika", "aiormq", "pamqp")):
            return _BROKER
        files = [frame.filename for frame in traceback.extract_tb(each.__traceback__)]
        for filename in reversed(files):
            path = filename.replace("\\", "/")
            if "/asyncpg/" in path or "/adapters/postgres/" in path:
                return _DATABASE
            if any(part in path for part in ("/aio_pika/", "/aiormq/", "amqp_cluster")):
                return _BROKER
    return None


def _registry_of(exc: RegistryUnavailable | RegistryUnauthorized) -> tuple[_Service, str]:
    url = exc.url or ""
    for service in _REGISTRIES:
        configured = _configured(service.field).rstrip("/")
        if url and url.rstrip("/") == configured:
            return service, configured
    return _Service("a registry", "BRIDGE_REGISTRY_URL or BRIDGE_PRESCHOOL_URL", "", ""), url


# --- the mapping --------------------------------------------------------------------------
def _settings_refused(exc: ValidationError) -> Ending:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = "BRIDGE_" + "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{name} ({error['msg']})")
    return Ending(
        Exit.CONFIGURATION,
        f"the setting {', '.join(problems)} is not valid: fix it in the environment and run"
        " the command again",
    )


def _unreachable(service: _Service, exc: BaseException) -> Ending:
    url = redacted(_configured(service.field))
    return Ending(
        Exit.UNAVAILABLE,
        f"could not reach {service.name} at {url} ({service.setting}): {type(exc).__name__};"
        f" {service.todo}, then run the command again",
    )


def _refused_login(exc: BaseException) -> Ending:
    url = redacted(_configured("database_url"))
    return Ending(
        Exit.CONFIGURATION,
        f"the database at {url} refused the connection ({type(exc).__name__}): check the user,"
        " password and database name in BRIDGE_DATABASE_URL",
    )


def explain(exc: BaseException) -> Ending:
    """The exit code and the one sentence for *exc* (never its message unless it is ours)."""
    if isinstance(exc, CommandFailed):
        return Ending(exc.code, exc.sentence)
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # a task group's: the first
        return explain(exc.exceptions[0])
    if isinstance(exc, StartRefused):  # the message names the setting or command that fixes it
        return Ending(Exit.CONFIGURATION, str(exc))
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return _settings_refused(exc)
    if isinstance(exc, RegistryUnavailable):
        service, url = _registry_of(exc)
        return Ending(
            Exit.UNAVAILABLE,
            f"{service.name} at {redacted(url)} ({service.setting}) did not answer ({exc}):"
            f" {service.todo or 'check that it is up'}, then run the command again",
        )
    if isinstance(exc, RegistryUnauthorized):
        service, url = _registry_of(exc)
        token = _TOKENS.get(service.field, "BRIDGE_REGISTRY_TOKEN or BRIDGE_PRESCHOOL_TOKEN")
        return Ending(
            Exit.CONFIGURATION,
            f"{service.name} at {redacted(url)} refused the bridge's token ({exc}): check {token}",
        )
    if type(exc).__name__ in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
        return _refused_login(exc)
    if isinstance(exc, Conflict) and exc.code.endswith("_running"):
        return Ending(Exit.UNAVAILABLE, f"{exc}: wait for it to finish, then run the command again")
    if isinstance(exc, NotFound | AccessDenied):
        return Ending(Exit.FAILED, str(exc))
    if isinstance(exc, InputRefused):
        # Our messages, but an input's message may quote the number it refused: the code only.
        return Ending(Exit.FAILED, f"refused ({exc.code}): {_first_line(type(exc).__doc__)}")
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError) and exc.filename:
        return Ending(
            Exit.FAILED,
            f"cannot open {exc.filename} ({exc.strerror or type(exc).__name__}): check the path",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        return Ending(
            Exit.CONFIGURATION,
            f"could not listen ({exc.strerror}): set BRIDGE_HTTP_HOST/BRIDGE_HTTP_PORT"
            " (SIM_HOST/SIM_PORT for the simulator) to a free address, or stop what holds it",
        )
    away = _service_of(exc) if _connection_failure(exc) else None
    if away is not None:
        return _unreachable(away, exc)
    return Ending(
        Exit.FAILED,
        f"the command failed unexpectedly ({type(exc).__name__}); rerun it with --debug to see"
        " where, and report it with that output",
    )


def _connection_failure(exc: BaseException) -> bool:
    """A connection that failed or was lost (OSError, a time-out, a library's
    "connection" error), as opposed to a statement refused."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    return any("Connect" in kind.__name__ for kind in type(exc).__mro__)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].rstrip(".") if text else "see the input"


def guarded(command: str, run: Callable[[], int], *, debug: bool = False) -> int:
    """Run *run* (a command's body); end any failure in one sentence and its exit code."""
    try:
        return int(run())
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`xueji ... | head`): nothing to say, and Python must not
        # complain about flushing stdout at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.FAILED
    except Exception as exc:  # every failure ends in one sentence, by design
        ending = explain(exc)
        if debugging(debug):
            traceback.print_exc(file=sys.stderr)
        print(redact(f"{command}: {ending.sentence}"), file=sys.stderr)
        return int(ending.code)
