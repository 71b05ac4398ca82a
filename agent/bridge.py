"""Gateway bridge: local broker -> disk spool -> active region, and cloud
commands back to the local broker.

Delivery is at least once, end to end:
- local side: a persistent session (MQTT 3.1.1 clean session off by
  default; MQTT 5 clean start off with a long session expiry if configured)
  with manual acknowledgement; a local message is acknowledged only
  after the spool batch holding it committed, so the local broker keeps and
  redelivers whatever the spool does not hold (agent crash, full spool);
- cloud side: messages go out in spool order, at most `inflight_window`
  awaiting PUBACK; a message leaves the spool only on its PUBACK; after any
  new connection (failover, failback) everything not acknowledged is sent
  again to the new region. Each carries a message id (an MQTT 5 user
  property) so consumers can drop duplicates.

One worker thread owns the spool and makes every spool decision; the paho
network thread and the CRT's threads only put items in its inbox.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotdr.agent.core.aws_limits import limit_violation
from iotdr.agent.core.bridge_settings import BridgeSettings, ToCloud
from iotdr.agent.spool import DeadLetter, DiskFullError, Incoming, Spool, SpoolFullError, Stored

log = logging.getLogger(__name__)

# publish(topic, payload, qos, user_properties) -> future of the PUBACK
CloudPublish = Callable[[str, bytes, int, Sequence[tuple[str, str]]], "Future[Any]"]
# A publish failed without a PUBACK (timeout, connection gone): tell the core.
PublishTrouble = Callable[[int, BaseException], None]
# PUBACK reason codes below 0x80 are successes (MQTT 5, 3.4.2.1).
_PUBACK_ERROR = 0x80
# Local topics whose mapping is remembered (matching a filter costs more
# than the rest of accepting a message).
_MAPPING_CACHE = 4096
# While the disk holding the spool is full, try writing again this often.
_DISK_RETRY_S = 1.0
# After any other spool failure (read-only file system, I/O error), reopen
# this often.
_SPOOL_RETRY_S = 2.0


@dataclass(slots=True)
class BridgeCounters:
    received: int = 0  # messages delivered by the local broker
    spooled: int = 0  # durably stored and acknowledged locally
    forwarded: int = 0  # PUBLISHes sent to the cloud (resends included)
    acknowledged: int = 0  # PUBACKs that removed a message from the spool
    dead_lettered: int = 0
    dropped_qos0: int = 0
    backpressure: int = 0  # times the spool was full and local acks stopped
    commands: int = 0  # cloud -> local messages delivered

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class _Pending:
    """A local message delivered to us, not yet in the spool."""

    mid: int
    qos: int
    incoming: Incoming | None = None
    dead: DeadLetter | None = None
    future: Future[None] | None = None  # an embedded publish waiting for the commit

    @property
    def size(self) -> int:
        return len(self.incoming.payload) if self.incoming else 0


@dataclass(slots=True)
class _Forwarding:
    attempt: int | None = None  # the cloud connection we forward on
    last_sent_id: int = 0
    inflight: set[int] = field(default_factory=set)


class Bridge:
    def __init__(
        self,
        settings: BridgeSettings,
        client_id: str,
        state_dir: Path,
        publish: CloudPublish,
        trouble: PublishTrouble,
    ) -> None:
        self._settings = settings
        self._publish = publish
        self._trouble = trouble
        path = Path(settings.spool.path) if settings.spool.path else state_dir / "spool.sqlite"
        self._spool_path = path
        self._inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.counters = BridgeCounters()
        self._stats_lock = threading.Lock()
        self._spool_stats: dict[str, Any] = {}
        self._pending: list[_Pending] = []
        # PUBACKed ids not yet deleted: deletes ride along with the next
        # commit (losing one to a power cut only means a duplicate resend).
        self._acked: list[int] = []
        self._acked_since = 0.0
        self._stats_at = 0.0
        self._stats_dirty = False
        self._forwarding = _Forwarding()
        self._mappings: dict[str, ToCloud | None] = {}
        self._full = False
        self._disk_full = False
        self._spool_error: str | None = None
        self._disk_batch: int | None = None  # fewer messages per write while the disk is full
        self._retry_at = 0.0  # no spool writes before this (disk full)
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._local_started = False
        self._worker = threading.Thread(target=self._run, name="iotdr-spool", daemon=True)
        self._local = self._local_client(client_id)

    # -- lifecycle (daemon thread) ---------------------------------------

    def start(self, *, connect_local: bool = True) -> None:
        self._worker.start()
        self._ready.wait(30.0)
        if not connect_local:
            return  # embedded: messages come through submit() only
        s = self._settings
        if s.local_protocol == "5":
            with_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            with_props.SessionExpiryInterval = 0xFFFFFFFF  # keep queuing while we are away
            with_props.ReceiveMaximum = s.local_receive_maximum
            self._local.connect_async(
                s.local_host, s.local_port, keepalive=30, clean_start=False, properties=with_props
            )
        else:  # 3.1.1: clean_session off, set on the client
            self._local.connect_async(s.local_host, s.local_port, keepalive=30)
        self._local.loop_start()
        self._local_started = True

    def stop(self) -> None:
        if self._local_started:
            self._local.disconnect()
            self._local.loop_stop()
        self._stopping.set()
        self._inbox.put(("stop",))
        self._worker.join(30.0)

    def submit(self, topic: str, payload: bytes) -> Future[None]:
        """A message from the program embedding the agent (cloud topic, no
        mapping). The future completes when it is durably spooled; a message
        AWS IoT would refuse raises ValueError at once."""
        problem = limit_violation(topic, payload)
        if problem:
            raise ValueError(problem)
        future: Future[None] = Future()
        self._inbox.put(("api", future, topic, payload))
        return future

    def on_connected(self, attempt: int) -> None:
        self._inbox.put(("connected", attempt))

    def on_disconnected(self) -> None:
        self._inbox.put(("disconnected",))

    def on_cloud_message(self, topic: str, payload: bytes) -> None:
        """A command or shadow message from the active region (CRT thread)."""
        for mapping in self._settings.from_cloud:
            if mqtt.topic_matches_sub(mapping.filter, topic):
                self._local.publish(mapping.local_topic(topic), payload, qos=1)
                with self._stats_lock:
                    self.counters.commands += 1
                return

    def status(self) -> dict[str, Any]:
        with self._stats_lock:
            spool = dict(self._spool_stats)
            counters = self.counters.as_dict()
        oldest = spool.pop("oldest_enqueued_at", None)
        spool["oldest_age_s"] = None if oldest is None else round(time.time() - oldest, 3)
        return {"spool": spool, **counters, "pending_local": len(self._pending)}

    # -- local side (paho thread) ------------------------------------------

    def _local_client(self, client_id: str) -> mqtt.Client:
        name = self._settings.local_client_id or f"{client_id}-bridge"
        if self._settings.local_protocol == "5":
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=name,
                protocol=MQTTProtocolVersion.MQTTv5,
                manual_ack=True,
            )
        else:  # a persistent session: the broker queues for us while we are away
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=name,
                protocol=MQTTProtocolVersion.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._local_connected
        client.on_message = self._local_message
        return client

    def _local_connected(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("local broker refused the bridge: %s", reason)
            return
        log.info("bridge connected to the local broker")
        filters = [(m.filter, 1) for m in self._settings.to_cloud]
        if filters:
            client.subscribe(filters)

    def _local_message(
        self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        self._inbox.put(("local", message.mid, message.qos, message.topic, message.payload))

    # -- the worker: every spool decision ------------------------------------

    def _run(self) -> None:
        """The worker. A spool that cannot be opened or fails under us (a
        read-only or vanished file system, an I/O error) is reported and
        opened again every few seconds; the local broker keeps everything
        not yet acknowledged meanwhile, so nothing is lost and nothing hangs."""
        while True:
            spool = self._open_spool()
            if spool is None:
                return  # stopped before the spool could be opened
            self._spool_error = None
            self._publish_stats(spool)
            self._ready.set()
            try:
                while self._step(spool):
                    pass
                return
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc, "failed")
                # Unacknowledged messages go out again from the spool's head.
                self._forwarding = _Forwarding(attempt=self._forwarding.attempt)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    spool.close()
            if self._stopping.wait(_SPOOL_RETRY_S):
                return

    def _failed(self, exc: BaseException, what: str) -> None:
        problem = f"spool {self._spool_path} {what}: {exc}"
        if problem != self._spool_error:  # once per distinct problem
            log.error(
                "%s; the local broker keeps messages meanwhile; trying again every %.0f s",
                problem,
                _SPOOL_RETRY_S,
            )
        self._spool_error = problem
        with self._stats_lock:
            self._spool_stats = {
                **self._spool_stats,
                "path": str(self._spool_path),
                "error": problem,
            }
        self._ready.set()  # start() goes on; local messages wait in the inbox

    def _open_spool(self) -> Spool | None:
        """The spool, once its disk lets SQLite open it (retried meanwhile,
        while the local broker keeps everything)."""
        while True:
            try:
                spool = Spool(
                    self._spool_path,
                    max_bytes=self._settings.spool.max_bytes,
                    synchronous=self._settings.spool.synchronous,
                )
                self._disk_has_room()
                return spool
            except DiskFullError as exc:
                if not self._disk_full:
                    self._disk_full = True
                    log.error("%s; trying again every %.0f s", exc, _DISK_RETRY_S)
                    with self._stats_lock:
                        self._spool_stats = {"path": str(self._spool_path), "disk_full": True}
                    self._ready.set()  # start() goes on; local messages wait in the inbox
                if self._stopping.wait(_DISK_RETRY_S):
                    return None
            except (sqlite3.Error, OSError) as exc:  # read-only, permissions, I/O
                self._failed(exc, "cannot be opened")
                if self._stopping.wait(_SPOOL_RETRY_S):
                    return None

    def _step(self, spool: Spool) -> bool:
        # Room in a full spool only comes with PUBACKs, which arrive here too;
        # wake up anyway to flush deferred deletes, and to retry a full disk.
        timeout: float | None = None
        if self._acked or self._stats_dirty:
            timeout = 0.1
        elif self._disk_full and self._pending:
            timeout = _DISK_RETRY_S
        try:
            items = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            items = []
        # Group commit: whatever queued up meanwhile goes into this batch.
        batch_size = self._settings.spool.batch_size
        while len(items) < batch_size:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        for item in items:
            kind = item[0]
            if kind == "stop":
                self._store(spool)
                # Acknowledged rows left behind would be sent again on restart.
                self._retry_at = 0.0
                self._flush_deletes(spool)
                return False
            if kind == "local":
                self._accept_local(*item[1:])
            elif kind == "api":
                self._pending.append(
                    _Pending(mid=0, qos=0, future=item[1], incoming=Incoming(item[2], item[3], 1))
                )
            elif kind == "puback":
                # self._acked is read each time: a "connected" flush replaces it.
                self._puback(spool, item[1], item[2], item[3], self._acked)
            elif kind == "connected":
                self._flush_deletes(spool)  # a resend starts from the spool's head
                self._forwarding = _Forwarding(attempt=item[1])
            elif kind == "disconnected":
                self._forwarding = _Forwarding()
        if self._acked and not self._acked_since:
            self._acked_since = time.monotonic()
        self._store(spool)
        if len(self._acked) >= 1000 or (self._acked and time.monotonic() - self._acked_since > 0.1):
            self._flush_deletes(spool)
        self._forward(spool)
        self._stats_dirty = True
        if time.monotonic() - self._stats_at > 0.25:
            self._publish_stats(spool)
        return True

    def _flush_deletes(self, spool: Spool) -> None:
        if not self._acked or time.monotonic() < self._retry_at:
            return
        try:
            removed = spool.delete(self._acked)
        except DiskFullError as exc:  # kept: deleted once there is room
            self._on_disk_full(exc)
            return
        self._wrote(removed)

    def _accept_local(self, mid: int, qos: int, topic: str, payload: bytes) -> None:
        with self._stats_lock:
            self.counters.received += 1
        mapping = self._mapping_for(topic)
        if mapping is None:  # a subscription left from an older configuration
            self._pending.append(_Pending(mid=mid, qos=qos))
            return
        cloud_topic = mapping.cloud_topic(topic)
        problem = limit_violation(cloud_topic, payload, allow_reserved=mapping.allow_reserved)
        if problem:
            log.warning("dead letter: %s: %s", cloud_topic, problem)
            self._pending.append(
                _Pending(mid=mid, qos=qos, dead=DeadLetter(cloud_topic, payload, problem))
            )
            return
        droppable = qos == 0 and mapping.drop_oldest_qos0
        # Everything goes to the cloud at QoS 1; "droppable" is a spool policy.
        self._pending.append(
            _Pending(mid=mid, qos=qos, incoming=Incoming(cloud_topic, payload, 1, droppable))
        )

    def _mapping_for(self, topic: str) -> ToCloud | None:
        try:
            return self._mappings[topic]
        except KeyError:
            pass
        found = next(
            (m for m in self._settings.to_cloud if mqtt.topic_matches_sub(m.filter, topic)), None
        )
        if len(self._mappings) >= _MAPPING_CACHE:  # topics with ids in them: start over
            self._mappings.clear()
        self._mappings[topic] = found
        return found

    def _store(self, spool: Spool) -> None:
        """Store what fits, in arrival order, then acknowledge it locally."""
        if not self._pending or time.monotonic() < self._retry_at:
            return
        if self._acked and (self._disk_full or not spool.fits(sum(p.size for p in self._pending))):
            # Acknowledged messages still hold room. On a full disk they go
            # first and on their own: a delete can use the spool's reserve,
            # a delete riding along with new messages cannot.
            self._flush_deletes(spool)
        take, size, capped = 0, 0, False
        room = spool.max_bytes - spool.size_bytes
        for pending in self._pending[: self._disk_batch]:
            if size + pending.size > room:
                freed = self._make_room(spool, pending)
                room += freed
                if size + pending.size > room:
                    capped = True
                    break
            size += pending.size
            take += 1
        batch, self._pending = self._pending[:take], self._pending[take:]
        # Only the size cap is "spool full"; a batch cut short while the
        # disk was full (self._disk_batch) goes on with the next write.
        if capped and not self._full:
            self._full = True
            with self._stats_lock:
                self.counters.backpressure += 1
            log.warning(
                "spool full (%d bytes): not acknowledging local messages; the "
                "local broker holds them until the cloud drains the spool",
                spool.max_bytes,
            )
        elif not capped and self._full:
            self._full = False
            log.info("spool has room again; accepting local messages")
        if not batch:
            return
        try:
            removed = spool.append(
                [p.incoming for p in batch if p.incoming],
                [p.dead for p in batch if p.dead],
                delete=self._acked,
            )
        except SpoolFullError as exc:  # sizes moved under us, or the disk is full
            self._pending = batch + self._pending
            if isinstance(exc, DiskFullError):
                # What the disk has room for may be less than a batch: try
                # half as many next time, down to one message.
                self._disk_batch = max(1, len(batch) // 2)
                self._on_disk_full(exc)
            return
        except BaseException:  # the spool failed: kept, stored once it is back
            self._pending = batch + self._pending
            raise
        self._wrote(removed)
        if self._disk_batch is not None:  # it fitted: grow back towards whole batches
            grown = self._disk_batch * 2
            self._disk_batch = None if grown >= self._settings.spool.batch_size else grown
        with self._stats_lock:
            self.counters.spooled += sum(1 for p in batch if p.incoming)
            self.counters.dead_lettered += sum(1 for p in batch if p.dead)
        for pending in batch:
            if pending.future is not None:
                pending.future.set_result(None)
            elif pending.qos > 0:
                self._local.ack(pending.mid, pending.qos)

    def _on_disk_full(self, exc: DiskFullError) -> None:
        """Back-pressure, as for a full spool: local messages stay with the
        local broker (unacknowledged) until a write succeeds again."""
        self._retry_at = time.monotonic() + _DISK_RETRY_S
        if self._disk_full:
            return
        self._disk_full = True
        with self._stats_lock:
            self.counters.backpressure += 1
        log.error(
            "%s: not acknowledging local messages; the local broker holds them, "
            "and the agent writes again once there is room",
            exc,
        )

    def _wrote(self, removed: int) -> None:
        """A spool write succeeded; it also forgot the acknowledged ids
        waiting in self._acked, `removed` of them still there."""
        self._disk_has_room()
        with self._stats_lock:
            self.counters.acknowledged += removed
        self._acked, self._acked_since = [], 0.0

    def _disk_has_room(self) -> None:
        if self._disk_full:
            self._disk_full = False
            log.info("the spool's disk has room again; accepting local messages")

    def _make_room(self, spool: Spool, pending: _Pending) -> int:
        if not (pending.incoming and pending.incoming.droppable):
            return 0
        before = spool.size_bytes
        dropped = spool.drop_oldest_droppable(pending.size)
        if dropped:
            with self._stats_lock:
                self.counters.dropped_qos0 += dropped
            log.warning("spool full: dropped %d oldest QoS 0 messages (mapping allows it)", dropped)
        return max(0, before - spool.size_bytes)

    def _forward(self, spool: Spool) -> None:
        fwd = self._forwarding
        if fwd.attempt is None:
            return
        room = self._settings.inflight_window - len(fwd.inflight)
        if room <= 0:
            return
        for message in spool.after(fwd.last_sent_id, room):
            self._send(message, fwd.attempt)
            fwd.inflight.add(message.id)
            fwd.last_sent_id = message.id

    def _send(self, message: Stored, attempt: int) -> None:
        props: tuple[tuple[str, str], ...] = ()
        if self._settings.message_id_property:
            props = ((self._settings.message_id_property, message.msg_id),)
        future = self._publish(message.topic, message.payload, message.qos, props)
        with self._stats_lock:
            self.counters.forwarded += 1

        def done(fut: Future[Any], row: int = message.id) -> None:
            self._inbox.put(("puback", row, attempt, fut))

        future.add_done_callback(done)

    def _puback(
        self, spool: Spool, row: int, attempt: int, fut: Future[Any], acked: list[int]
    ) -> None:
        current = self._forwarding.attempt == attempt
        if current:
            self._forwarding.inflight.discard(row)
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None or fut.cancelled():
            # No PUBACK: the message stays and is sent again after reconnect.
            if current and exc is not None:
                self._trouble(attempt, exc)
            return
        code = _reason_code(fut.result())
        if code is not None and code >= _PUBACK_ERROR:
            reason = f"region refused the publish: PUBACK reason code 0x{code:02x}"
            log.warning("dead letter: row %d: %s", row, reason)
            try:
                spool.move_to_dead_letters(row, reason)
            except DiskFullError as full:  # stays in the spool; refused again later
                self._on_disk_full(full)
                return
            with self._stats_lock:
                self.counters.dead_lettered += 1
            return
        acked.append(row)  # delivered (even if on an earlier connection)

    def _publish_stats(self, spool: Spool) -> None:
        self._stats_at, self._stats_dirty = time.monotonic(), False
        stats = spool.stats()
        with self._stats_lock:
            self._spool_stats = {
                "path": str(spool.path),
                "depth": stats.depth,
                "bytes": stats.bytes,
                "max_bytes": spool.max_bytes,
                "oldest_enqueued_at": stats.oldest_enqueued_at,
                "dead_letters": stats.dead_letters,
                "recovered_from": stats.recovered_from,
                "full": self._full,
                "disk_full": self._disk_full,
                "error": self._spool_error,
            }


def _reason_code(result: Any) -> int | None:
    puback = getattr(result, "puback", None)
    code = getattr(puback, "reason_code", None)
    return None if code is None else int(code)
