"""The connection type our queries accept: a plain connection or one lent by a pool."""

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

# The database is away (down, restarting, unreachable), as opposed to refusing a statement:
# worth waiting for, and never a reason to doubt the rows being written.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    # A server restart cuts connections mid-statement (AdminShutdownError) and can leave a
    # pooled connection confused about its state (InternalClientError); both pass, found
    # by tests/faults.
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,
    # Out of disk, memory or connections: waited out like a restart, never counted against
    # a message's delivery limit or a child's drive failures.
    asyncpg.exceptions.InsufficientResourcesError,
    ConnectionError,
    OSError,
    # A failover (issue #20): the server left to us refuses writes until we find the new
    # primary (failover.py); asyncpg's "no host is writable" is an InternalClientError.
    asyncpg.ReadOnlySQLTransactionError,
)
