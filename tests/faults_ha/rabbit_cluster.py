"""A RabbitMQ cluster of its own on this machine, beside the machine's broker.

Each node has its own name, AMQP and distribution ports, data and log folders (the
`rabbitmq` user's), an empty plugins file and a config file of its own; the cluster has
its own Erlang cookie, so its nodes can never be joined to the machine's broker by
mistake. Nodes are started detached, joined with ``rabbitmqctl join_cluster``, SIGKILLed
by pid and stopped (then killed, if need be) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from tests.faults_ha.engines import RABBIT_BIN, Engine, alive, free_port, give_to, gone, run_as

USER = "rabbitmq"


@dataclass
class RabbitNode:
    """One node of the cluster."""

    name: str
    amqp_port: int
    dist_port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def pid_file(self) -> Path:
        return self.folder / "node.pid"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and alive(pid)


class RabbitCluster(Engine):
    """*size* RabbitMQ nodes, clustered; ``async with`` starts them and tears them down."""

    def __init__(self, root: Path, *, size: int = 3) -> None:
        self.root = root
        self.home = root / "home"  # HOME of every node and CLI call: the cluster's cookie
        tag = secrets.token_hex(3)
        self.nodes = [
            RabbitNode(f"xueji-ha-{tag}-{i}@localhost", free_port(), free_port(), root / f"n{i}")
            for i in range(1, size + 1)
        ]

    @property
    def urls(self) -> str:
        """Every node, as BRIDGE_AMQP_URL takes them."""
        return ",".join(node.url for node in self.nodes)

    def _env(self, node: RabbitNode) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_MNESIA_BASE": str(node.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.folder / "log"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.folder / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(node.folder / "rabbitmq.conf"),
            # Not the machine's rabbitmq-env.conf: it names the machine's node.
            "RABBITMQ_CONF_ENV_FILE": str(node.folder / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    async def ctl(self, node: RabbitNode, *args: str, timeout_s: float = 60.0) -> str:
        """``rabbitmqctl -n node ...``: its output."""
        return await run_as(
            USER, str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args,
            env=self._env(node), timeout_s=timeout_s,
        )  # fmt: skip

    async def start(self) -> None:
        """Start every node and join the others to the first."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.home.mkdir(exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        os.chmod(cookie, 0o400)
        for node in self.nodes:
            (node.folder / "mnesia").mkdir(parents=True)
            (node.folder / "log").mkdir()
            (node.folder / "enabled_plugins").write_text("[].\n")
            (node.folder / "rabbitmq-env.conf").write_text("")
            (node.folder / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\n"
                "loopback_users.guest = true\n"
                # The suite's data is small; do not stop publishers over this box's disk.
                "disk_free_limit.absolute = 50MB\n"
            )
        give_to(self.root, USER)
        await asyncio.gather(*(self._boot(node) for node in self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            await self.ctl(node, "stop_app")
            await self.ctl(node, "join_cluster", first.name)
            await self.ctl(node, "start_app")
        status = await self.ctl(first, "cluster_status")
        for node in self.nodes:
            if node.name not in status:
                raise RuntimeError(f"{node.name} did not join: {status}")

    async def _boot(self, node: RabbitNode) -> None:
        await run_as(USER, str(RABBIT_BIN / "rabbitmq-server"), "-detached", env=self._env(node))
        # `wait` waits for the pid file, then for the node to have booted.
        await self.ctl(node, "wait", "--timeout", "120", str(node.pid_file), timeout_s=150)

    async def restart(self, node: RabbitNode) -> None:
        """Start a node again (after a kill); it rejoins the cluster from its own data."""
        node.pid_file.unlink(missing_ok=True)
        await self._boot(node)

    async def kill(self, node: RabbitNode) -> None:
        """SIGKILL the node's Erlang VM: no goodbye to clients or to the other nodes."""
        pid = node.pid()
        assert pid is not None, f"{node.name} has no pid"
        os.kill(pid, signal.SIGKILL)
        assert await gone(pid, 10), f"{node.name} outlived SIGKILL"

    async def queue_leader(
        self, queue: str, *, asking: RabbitNode | None = None
    ) -> RabbitNode | None:
        """The node whose replica of the quorum queue *queue* leads (None: being elected)."""
        ask = asking or next(n for n in self.nodes if n.running())
        out = await self.ctl(ask, "list_queues", "-q", "--no-table-headers", "name", "leader")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return next((n for n in self.nodes if n.name == parts[1]), None)
        return None  # a queue without a leader is left out of the listing

    async def replicas(self, queue: str, *, asking: RabbitNode) -> tuple[set[str], set[str]]:
        """The quorum queue's members and, of them, those online."""
        out = await self.ctl(
            asking, "list_queues", "-q", "--no-table-headers", "name", "members", "online"
        )
        for line in out.splitlines():
            name, _, rest = line.partition("\t")
            if name == queue:
                members, _, online = rest.partition("\t")
                return _names(members), _names(online)
        raise LookupError(f"queue {queue} not on {asking.name}: {out}")

    async def consumers(self, queue: str, *, asking: RabbitNode) -> list[str]:
        """The nodes whose channels consume from *queue*, one entry per consumer."""
        out = await self.ctl(
            asking, "list_consumers", "-q", "--no-table-headers", "queue_name", "channel_pid"
        )
        found: list[str] = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                # A channel's pid names its node: <xueji-ha-…-2@localhost.1733….1234.0>
                found.extend(n.name for n in self.nodes if parts[1].startswith(f"<{n.name}."))
        return found

    async def stop(self) -> None:
        """Stop every node that runs (politely, then by SIGKILL) and remove their folders."""

        async def stop_one(node: RabbitNode) -> None:
            pid = node.pid()
            if pid is None or not alive(pid):
                return
            with contextlib.suppress(RuntimeError):
                await self.ctl(node, "stop", timeout_s=30)
            if not await gone(pid, 10):
                os.kill(pid, signal.SIGKILL)

        await asyncio.gather(*(stop_one(node) for node in self.nodes))
        # epmd (the machine's) forgets a node when its VM's connection to it closes.
        shutil.rmtree(self.root, ignore_errors=True)


def _names(listing: str) -> set[str]:
    """``[a@localhost, b@localhost]`` as a set of node names."""
    return {n.strip() for n in listing.strip().strip("[]").split(",") if n.strip()}
