"""A RabbitMQ node of the test's own on loopback ports, to `kill -9` and restart at will.

It is the machine's `rabbitmq-server` (Debian's package in CI) started as a separate node: its own
node name, AMQP and distribution ports, data and log directories under the test's tmp dir, no
plugins, the system's `rabbitmq.conf` and `rabbitmq-env.conf` replaced by ours, and an Erlang
cookie of its own. `kill()` is SIGKILL to the node's whole process group (no graceful shutdown,
nothing flushed), `start()` again recovers from the same data directory. A machine without
RabbitMQ (a fresh developer machine has only Python and make) skips the tests that need one.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from kombu import Connection

from tests.support.processes import processes_mentioning

# Debian's /usr/sbin/rabbitmq-server switches to the `rabbitmq` user and writes to /var/log; the
# script it wraps runs a node as whoever calls it.
_DEBIAN_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
START_TIMEOUT_SECONDS = 90.0
# Below Linux's ephemeral ports (32768 and up) and RabbitMQ's own defaults (5672, 25672).
_PORT_RANGE = (26000, 32000)


def _stable_free_port() -> int:
    """A free loopback port below the ephemeral range: a restart on the same port must not find
    it taken as the local end of someone's outgoing connection, as an ephemeral port may be."""
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for a RabbitMQ node")


def new_nodename() -> str:
    """A node name no other test (or the machine's own node) uses."""
    return f"timo-test-{uuid.uuid4().hex[:10]}@localhost"


def server_script() -> Path:
    """The `rabbitmq-server` script to run a private node with; skips the test if there is none."""
    if _DEBIAN_SCRIPT.exists():
        return _DEBIAN_SCRIPT
    found = shutil.which("rabbitmq-server")
    if found is None:
        pytest.skip("rabbitmq-server is not installed (Debian/Ubuntu: apt install rabbitmq-server)")
    return Path(found)


class RabbitMQNode:
    """One private `rabbitmq-server` node under `base`, listening on 127.0.0.1 only."""

    def __init__(
        self,
        base: Path,
        *,
        nodename: str | None = None,
        cookie: str | None = None,
        config: str = "",
    ) -> None:
        self.script = server_script()
        self.base = base
        self.nodename = nodename or new_nodename()
        self.port = _stable_free_port()
        self.dist_port = _stable_free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.home = base / "home"
        for folder in (self.home, base / "mnesia", base / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")
        (base / "rabbitmq.conf").write_text(
            "# A private test node: loopback only, no default of the system's rabbitmq.conf.\n"
            + config
        )
        # The node and any rabbitmqctl talking to it read the cookie from $HOME; one of our own
        # leaves the user's ~/.erlang.cookie alone (a cluster's nodes share one).
        cookie_file = self.home / ".erlang.cookie"
        if not cookie_file.exists():
            cookie_file.write_text(cookie or secrets.token_hex(16).upper())
            cookie_file.chmod(0o400)

    @property
    def url(self) -> str:
        """The node's AMQP URL (the default `guest` user, which RabbitMQ admits from loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def environment(self) -> dict[str, str]:
        """The environment that makes `rabbitmq-server` (or `rabbitmqctl`) this node."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RABBITMQ_", "ERL_")) and k != "HOME"
        }
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            # The Erlang distribution (epmd, and the node's own port) on loopback too.
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def start(self, *, wait: bool = True) -> None:
        """Start the node (recovering whatever its data directory holds); with `wait`, return
        once it accepts AMQP connections."""
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            [str(self.script)],
            env=self.environment(),
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            stdout=(self.base / "node.out").open("ab"),
            stderr=subprocess.STDOUT,
            # Its own process group: `kill` takes the script, the VM and its helpers together.
            start_new_session=True,
        )
        if wait:
            self.wait_until_accepting()

    def wait_until_accepting(self, timeout: float = START_TIMEOUT_SECONDS) -> float:
        """Wait until the node accepts an AMQP connection; return how long that took."""
        started = time.monotonic()
        while True:
            try:
                with Connection(self.url, connect_timeout=1) as conn:
                    conn.ensure_connection(max_retries=0, timeout=1)
                return time.monotonic() - started
            except Exception:
                pass
            assert self._process is not None and self._process.poll() is None, (
                f"rabbitmq-server exited:\n{self.output_tail()}"
            )
            assert time.monotonic() - started < timeout, (
                f"rabbitmq-server did not accept AMQP within {timeout} s:\n{self.output_tail()}"
            )
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the node's process group at once: no graceful shutdown, nothing flushed."""
        if self._process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=10)
        self._process = None
        # The VM is the script's child, reaped by init: wait until it is really gone, so that a
        # restart never finds the old node still holding its ports or its data directory.
        deadline = time.monotonic() + 10
        while self.processes():
            assert time.monotonic() < deadline, f"{self.nodename} survived SIGKILL"
            time.sleep(0.05)

    def restart(self) -> float:
        """Start the killed node again on the same data; return how long it took to accept."""
        self.start(wait=False)
        return self.wait_until_accepting()

    def ctl(self, *args: str) -> str:
        """Run `rabbitmqctl` against this node; return its output."""
        command = [str(self.script.with_name("rabbitmqctl")), "--node", self.nodename, *args]
        result = subprocess.run(
            command, env=self.environment(), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{' '.join(args)} failed: {result.stdout}{result.stderr}"
        return result.stdout

    def processes(self) -> list[object]:
        """Live processes of this node (the VM names the node on its command line)."""
        return list(processes_mentioning(self.nodename.split("@")[0]))

    def output_tail(self, chars: int = 3000) -> str:
        """The end of the node's console output, for failure messages."""
        path = self.base / "node.out"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@contextmanager
def rabbitmq_node(base: Path) -> Iterator[RabbitMQNode]:
    """A running private node for the duration of the block; killed (and checked gone) after."""
    node = RabbitMQNode(base)
    try:
        node.start()
        yield node
    finally:
        node.kill()
        assert not node.processes(), f"{node.nodename} left processes behind"


@contextmanager
def rabbitmq_cluster(base: Path, size: int = 3) -> Iterator[list[RabbitMQNode]]:
    """`size` private nodes in one cluster for the duration of the block; all killed after.

    The first node starts alone; the others boot together and join it (peer discovery from the
    configuration), sharing its Erlang cookie.
    """
    cookie = secrets.token_hex(16).upper()
    first = RabbitMQNode(base / "node-1", cookie=cookie)
    join_first = (
        "cluster_formation.peer_discovery_backend = classic_config\n"
        f"cluster_formation.classic_config.nodes.1 = {first.nodename}\n"
    )
    nodes = [first] + [
        RabbitMQNode(base / f"node-{i}", cookie=cookie, config=join_first)
        for i in range(2, size + 1)
    ]
    try:
        first.start()
        for node in nodes[1:]:
            node.start(wait=False)
        for node in nodes[1:]:
            node.wait_until_accepting()
        for node in nodes:
            status = node.ctl("cluster_status")
            missing = [n.nodename for n in nodes if n.nodename not in status]
            assert not missing, f"{node.nodename} is not clustered with {missing}:\n{status}"
        yield nodes
    finally:
        for node in nodes:
            node.kill()
        for node in nodes:
            assert not node.processes(), f"{node.nodename} left processes behind"
