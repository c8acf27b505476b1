#!/usr/bin/env python3
"""Interoperability checks of a Kafka-protocol broker with stock Python clients.

    python interop.py --bootstrap HOST:PORT --client confluent|kafka-python --prefix UNIQUE

`confluent` is confluent-kafka (librdkafka); `kafka-python` is the pure-Python
client (module `kafka`). Topics and groups are named `<prefix>-...` and created
through the client's admin API. One line per case (`ok NAME` / `FAIL NAME:
reason`), then `N passed, M failed`; exit status 1 if any case failed. Every
wait is bounded (WAIT seconds), and a watchdog ends a run that hangs anyway.
"""
import argparse
import faulthandler
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

WAIT = 30.0  # seconds: the bound on every wait for the broker
T0 = (int(time.time()) - 3600) * 1000  # explicit timestamps, an hour ago
CODECS = ["gzip", "snappy", "lz4", "zstd"]


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_until(cond, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Rec:
    key: bytes | None
    value: bytes | None
    headers: tuple = ()  # ((name, bytes), ...)
    timestamp: int | None = None
    partition: int = -1
    offset: int = -1

    def content(self):
        return (self.key, self.value, self.headers, self.timestamp)


def murmur2(data: bytes) -> int:
    """Java Kafka's Utils.murmur2, as an unsigned 32-bit value."""
    m, seed, mask = 0x5BD1E995, 0x9747B28C, 0xFFFFFFFF
    n = len(data)
    h = (seed ^ n) & mask
    for i in range(0, n - n % 4, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[n - n % 4:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h = ((h ^ tail[0]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def key_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# Java's UtilsTest vectors (signed ints) for our murmur2.
MURMUR2_VECTORS = {b"21": -973932308, b"foobar": -790332482, b"abc": 479470107,
                   b"a-little-bit-long-string": -985981536,
                   b"a-little-bit-longer-string": -1486304829,
                   b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}


# ---------------------------------------------------------------- clients
# Both adapters offer: create_topic, produce (-> [(partition, offset)]), read,
# group_member (-> poll, commit_or_rewind, close), commit_offsets, committed,
# admin_committed, offset_for_time.

class ConfluentClient:
    def __init__(self, bootstrap):
        import confluent_kafka as ck
        from confluent_kafka.admin import AdminClient, NewTopic
        self.ck, self.NewTopic, self.bootstrap = ck, NewTopic, bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create_topic(self, name, partitions):
        futs = self.admin.create_topics([self.NewTopic(name, partitions, 1)], request_timeout=WAIT)
        futs[name].result(timeout=WAIT)

    def produce(self, topic, recs, compression=None):
        p = self.ck.Producer({"bootstrap.servers": self.bootstrap, "partitioner": "murmur2_random",
                              "linger.ms": 20, "message.timeout.ms": int(WAIT * 1000),
                              "compression.type": compression or "none"})
        out = [None] * len(recs)
        for i, r in enumerate(recs):
            def report(err, msg, i=i):
                out[i] = err or (msg.partition(), msg.offset())
            extra = {"headers": list(r.headers)} if r.headers else {}
            p.produce(topic, value=r.value, key=r.key, timestamp=r.timestamp or 0,
                      on_delivery=report, **extra)
            p.poll(0)
        check(p.flush(WAIT) == 0, "produce: not all records delivered in time")
        for o in out:
            check(isinstance(o, tuple), f"produce failed: {o}")
        return out

    @contextmanager
    def _consumer(self, group, **extra):
        c = self.ck.Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                              "enable.auto.commit": False, "auto.offset.reset": "earliest", **extra})
        try:
            yield c
        finally:
            c.close()

    @staticmethod
    def _rec(m):
        return Rec(m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1],
                   m.partition(), m.offset())

    def read(self, topic, partitions, count, group, committed_only=False):
        got, deadline = [], time.monotonic() + WAIT
        isolation = "read_committed" if committed_only else "read_uncommitted"
        with self._consumer(group, **{"isolation.level": isolation}) as c:
            c.assign([self.ck.TopicPartition(topic, p, self.ck.OFFSET_BEGINNING)
                      for p in range(partitions)])
            while len(got) < count and time.monotonic() < deadline:
                for m in c.consume(100, 0.2):
                    check(m.error() is None, f"consume: {m.error()}")
                    got.append(self._rec(m))
        return got

    def group_member(self, group, topic, strategy, on_assign, on_revoke):
        ck, tp = self.ck, self.ck.TopicPartition
        c = ck.Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "partition.assignment.strategy": strategy, "session.timeout.ms": 10000,
                         "heartbeat.interval.ms": 1000, "max.poll.interval.ms": 60000})
        parts = lambda f: lambda _c, ps: f({p.partition for p in ps})  # noqa: E731
        c.subscribe([topic], on_assign=parts(on_assign), on_revoke=parts(on_revoke),
                    on_lost=parts(on_revoke))

        class Member:
            def poll(self):
                return [ConfluentClient._rec(m) for m in c.consume(10, 0.2) if m.error() is None]

            def commit_or_rewind(self, rec):
                """Commits past `rec` synchronously; if refused, seeks back to it."""
                try:
                    res = c.commit(offsets=[tp(topic, rec.partition, rec.offset + 1)],
                                   asynchronous=False)
                    if all(r.error is None for r in res):
                        return True
                except ck.KafkaException:
                    pass
                try:
                    c.seek(tp(topic, rec.partition, rec.offset))
                except ck.KafkaException:
                    pass  # no longer ours: its next owner starts at the commit
                return False

            close = c.close
        return Member()

    def commit_offsets(self, group, topic, offsets):
        with self._consumer(group) as c:
            res = c.commit(offsets=[self.ck.TopicPartition(topic, p, o) for p, o in offsets.items()],
                           asynchronous=False)
            check(all(r.error is None for r in res), f"commit: {res}")

    def committed(self, group, topic, partitions):
        with self._consumer(group) as c:
            res = c.committed([self.ck.TopicPartition(topic, p) for p in range(partitions)],
                              timeout=WAIT)
        return {r.partition: r.offset for r in res if r.offset >= 0}

    def admin_committed(self, group, topic, partitions=None):
        """The group's offsets in `topic` by the admin API: of every partition the group
        has, or (naming them in the request) of range(partitions)."""
        tps = None if partitions is None else [self.ck.TopicPartition(topic, p) for p in range(partitions)]
        req = [self.ck.ConsumerGroupTopicPartitions(group, tps)]
        res = self.admin.list_consumer_group_offsets(req, request_timeout=WAIT)[group]
        return {tp.partition: tp.offset for tp in res.result(timeout=WAIT).topic_partitions
                if tp.topic == topic and tp.offset >= 0}

    def transactional(self, tid):
        return ConfluentTransactions(self.ck, self.bootstrap, tid)

    def offset_for_time(self, topic, partition, ts, group):
        with self._consumer(group) as c:
            [r] = c.offsets_for_times([self.ck.TopicPartition(topic, partition, ts)], timeout=WAIT)
        check(r.error is None, f"offsets_for_times: {r.error}")
        return r.offset if r.offset >= 0 else None


class KafkaPythonClient:
    def __init__(self, bootstrap):
        import kafka
        import kafka.errors
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        self.kafka, self.NewTopic, self.range = kafka, NewTopic, RangePartitionAssignor
        self.common = {"bootstrap_servers": bootstrap, "request_timeout_ms": int(WAIT * 1000)}
        self.admin = KafkaAdminClient(**self.common)

    def create_topic(self, name, partitions):
        self.admin.create_topics([self.NewTopic(name, partitions, 1)], timeout_ms=int(WAIT * 1000))

    def produce(self, topic, recs, compression=None):
        p = self.kafka.KafkaProducer(compression_type=compression, linger_ms=20,
                                     max_block_ms=int(WAIT * 1000), **self.common)
        try:
            futs = [p.send(topic, value=r.value, key=r.key, headers=list(r.headers),
                           timestamp_ms=r.timestamp) for r in recs]
            p.flush(timeout=WAIT)
            return [(md.partition, md.offset) for md in (f.get(timeout=WAIT) for f in futs)]
        finally:
            p.close(timeout=WAIT)

    def _new_consumer(self, group, **extra):
        return self.kafka.KafkaConsumer(group_id=group, enable_auto_commit=False,
                                        auto_offset_reset="earliest", **self.common, **extra)

    @contextmanager
    def _consumer(self, group, **extra):
        c = self._new_consumer(group, **extra)
        try:
            yield c
        finally:
            c.close(autocommit=False)

    @staticmethod
    def _rec(m):
        return Rec(m.key, m.value, tuple(m.headers or ()), m.timestamp, m.partition, m.offset)

    def read(self, topic, partitions, count, group, committed_only=False):
        got, deadline = [], time.monotonic() + WAIT
        isolation = "read_committed" if committed_only else "read_uncommitted"
        with self._consumer(None, isolation_level=isolation) as c:
            c.assign([self.kafka.TopicPartition(topic, p) for p in range(partitions)])
            c.seek_to_beginning()
            while len(got) < count and time.monotonic() < deadline:
                for batch in c.poll(timeout_ms=200).values():
                    got.extend(self._rec(m) for m in batch)
        return got

    def group_member(self, group, topic, strategy, on_assign, on_revoke):
        check(strategy == "range", f"kafka-python has no {strategy} assignor here")
        k = self.kafka

        class Listener(k.ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                on_revoke({tp.partition for tp in revoked})

            def on_partitions_assigned(self, assigned):
                on_assign({tp.partition for tp in assigned})
        c = self._new_consumer(group, partition_assignment_strategy=[self.range],
                               session_timeout_ms=10000, heartbeat_interval_ms=1000,
                               max_poll_interval_ms=60000)
        c.subscribe([topic], listener=Listener())

        class Member:
            def poll(self):
                return [KafkaPythonClient._rec(m) for batch in
                        c.poll(timeout_ms=200, max_records=10).values() for m in batch]

            def commit_or_rewind(self, rec):
                """Commits past `rec` synchronously; if refused, seeks back to it."""
                tp = k.TopicPartition(topic, rec.partition)
                try:
                    c.commit({tp: k.OffsetAndMetadata(rec.offset + 1, "", -1)})
                    return True
                except k.errors.KafkaError:
                    pass
                try:
                    c.seek(tp, rec.offset)
                except (k.errors.KafkaError, AssertionError):
                    pass  # no longer ours: its next owner starts at the commit
                return False

            def close(self):
                c.close(autocommit=False)
        return Member()

    def commit_offsets(self, group, topic, offsets):
        tps = {p: self.kafka.TopicPartition(topic, p) for p in offsets}
        with self._consumer(group) as c:
            c.assign(list(tps.values()))
            c.commit({tps[p]: self.kafka.OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})

    def committed(self, group, topic, partitions):
        with self._consumer(group) as c:
            got = {p: c.committed(self.kafka.TopicPartition(topic, p)) for p in range(partitions)}
        return {p: o for p, o in got.items() if o is not None and o >= 0}

    def admin_committed(self, group, topic, partitions=None):
        tps = None if partitions is None else [self.kafka.TopicPartition(topic, p) for p in range(partitions)]
        got = self.admin.list_consumer_group_offsets(group, partitions=tps)
        return {tp.partition: om.offset for tp, om in got.items()
                if tp.topic == topic and om.offset >= 0}

    def transactional(self, tid):
        return KafkaPythonTransactions(self.kafka, self.common, tid)

    def offset_for_time(self, topic, partition, ts, group):
        tp = self.kafka.TopicPartition(topic, partition)
        with self._consumer(None) as c:
            r = c.offsets_for_times({tp: ts})[tp]
        return None if r is None else r.offset


# ---------------------------------------------------------------- cases

class ConfluentTransactions:
    """A transactional producer (confluent-kafka)."""

    def __init__(self, ck, bootstrap, tid):
        self.ck = ck
        self.p = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                              "partitioner": "murmur2_random", "linger.ms": 5,
                              "message.timeout.ms": int(WAIT * 1000),
                              "transaction.timeout.ms": 60000})
        self.p.init_transactions(WAIT)

    def begin(self):
        self.p.begin_transaction()

    def send(self, topic, recs):
        for r in recs:
            self.p.produce(topic, key=r.key, value=r.value, timestamp=r.timestamp or 0)
        check(self.p.flush(WAIT) == 0, "transactional records not delivered in time")

    def commit(self):
        self.p.commit_transaction(WAIT)

    def abort(self):
        self.p.abort_transaction(WAIT)

    def close(self):
        try:
            self.p.flush(0)
        except self.ck.KafkaException as e:
            # A fenced producer reports its fencing again on the way out;
            # anything else is a failure.
            if e.args[0].code() != self.ck.KafkaError._FENCED:
                raise


class KafkaPythonTransactions:
    """A transactional producer (kafka-python)."""

    def __init__(self, kafka, common, tid):
        self.p = kafka.KafkaProducer(transactional_id=tid, linger_ms=5,
                                     max_block_ms=int(WAIT * 1000), **common)
        self.p.init_transactions()

    def begin(self):
        self.p.begin_transaction()

    def send(self, topic, recs):
        futs = [self.p.send(topic, key=r.key, value=r.value, timestamp_ms=r.timestamp) for r in recs]
        self.p.flush(timeout=WAIT)
        for f in futs:
            f.get(timeout=WAIT)

    def commit(self):
        self.p.commit_transaction()

    def abort(self):
        self.p.abort_transaction()

    def close(self):
        self.p.close(timeout=0)


def with_positions(recs, placed):
    return [Rec(r.key, r.value, r.headers, r.timestamp, p, o) for r, (p, o) in zip(recs, placed)]


def check_read_back(cl, topic, partitions, produced, group):
    """Reads the topic from the start; each partition must hold exactly `produced`."""
    got = cl.read(topic, partitions, len(produced), group)
    check(len(got) == len(produced), f"read {len(got)} records of {len(produced)}")
    for p in range(partitions):
        want = sorted((r for r in produced if r.partition == p), key=lambda r: r.offset)
        have = [r for r in got if r.partition == p]
        check([r.offset for r in have] == [r.offset for r in want],
              f"partition {p}: offsets {[r.offset for r in have][:8]}... != {[r.offset for r in want][:8]}...")
        for w, h in zip(want, have):
            check(w.content() == h.content(), f"partition {p} offset {w.offset}: "
                  f"read {h.content()!r}, produced {w.content()!r}")


def case_produce_consume(cl, prefix):
    topic = f"{prefix}-basic"
    cl.create_topic(topic, 2)
    recs = [Rec(b"k0", b"v0", (), T0),
            Rec(b"k1", b"v1", (("h1", b"one"),), T0 + 1000),
            Rec(b"k2", b"v2", (("h1", b"one"), ("h2", b"two")), T0 + 2000),
            Rec(b"k3", b"", (("dup", b"a"), ("dup", b"b")), T0 + 3000),
            Rec(None, b"no key", (("h", b""),), T0 + 4000),
            Rec(b"k5", None, (), T0 + 5000)]
    recs += [Rec(f"key-{i}".encode(), f"value-{i}".encode(), (("i", str(i).encode()),), T0 + 6000 + i)
             for i in range(40)]
    produced = with_positions(recs, cl.produce(topic, recs))
    check_read_back(cl, topic, 2, produced, f"{prefix}-basic-reader")


def case_murmur2(cl, prefix):
    for k, want in MURMUR2_VECTORS.items():
        got = murmur2(k)
        signed = got - (1 << 32) if got >= 1 << 31 else got
        check(signed == want, f"murmur2 self-test on {k!r}: {signed} != {want}")
    topic = f"{prefix}-keyed"
    cl.create_topic(topic, 3)
    recs = [Rec(f"customer-{i}".encode(), b"x", (), T0 + i) for i in range(90)]
    produced = with_positions(recs, cl.produce(topic, recs))
    for r in produced:
        check(r.partition == key_partition(r.key, 3),
              f"key {r.key!r} went to partition {r.partition}, murmur2 says {key_partition(r.key, 3)}")
    check(len({r.partition for r in produced}) == 3, "90 keys did not reach all 3 partitions")
    check_read_back(cl, topic, 3, produced, f"{prefix}-keyed-reader")


class Member(threading.Thread):
    """A group member that processes one record at a time and commits it synchronously.

    `log` gets one entry [member, partition, offset, committed?] per processing,
    appended before the commit, so the log is in processing order."""

    def __init__(self, cl, name, group, topic, strategy, log):
        super().__init__(name=name, daemon=True)
        self.cl, self.group, self.topic, self.strategy, self.log = cl, group, topic, strategy, log
        self.owned, self.assigned_ever, self.error = set(), False, None
        self.stopping = threading.Event()

    def on_assign(self, parts):
        self.owned |= parts
        self.assigned_ever = self.assigned_ever or bool(parts)

    def on_revoke(self, parts):
        self.owned -= parts

    def run(self):
        try:
            m = self.cl.group_member(self.group, self.topic, self.strategy,
                                     self.on_assign, self.on_revoke)
        except Exception as e:  # noqa: BLE001 - reported by the case
            self.error = e
            return
        try:
            while not self.stopping.is_set():
                failed = set()  # partitions whose commit failed in this batch
                for rec in m.poll():
                    if rec.partition in failed:
                        continue
                    entry = [self.name, rec.partition, rec.offset, None]
                    self.log.append(entry)
                    # A refused commit rewinds: the record is processed again, here or
                    # by the partition's next owner.
                    entry[3] = m.commit_or_rewind(rec)
                    if not entry[3]:
                        failed.add(rec.partition)
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            m.close()


def case_group(cl, prefix, strategy):
    topic, group, parts = f"{prefix}-group-{strategy}", f"{prefix}-group-{strategy}", 6
    cl.create_topic(topic, parts)
    log, produced, members = [], set(), {}
    n = [0]

    def produce_round(count):
        recs = [Rec(f"g{n[0] + i}".encode(), b"w", (), T0 + n[0] + i) for i in range(count)]
        n[0] += count
        produced.update(cl.produce(topic, recs))

    def start(name):
        members[name] = Member(cl, name, group, topic, strategy, log)
        members[name].start()

    def settled(names):
        def ok():
            for m in members.values():
                check(m.error is None, f"member {m.name}: {m.error!r}")
            owned = [members[x].owned for x in names]
            return all(owned) and sum(map(len, owned)) == parts and set().union(*owned) == set(range(parts))
        wait_until(ok, f"members {names} to share all {parts} partitions")

    def all_done():
        def missing():
            return produced - {(e[1], e[2]) for e in log if e[3]}
        try:
            wait_until(lambda: not missing(), "every record processed and committed")
        except Failure as e:
            gone = sorted(missing())
            raise Failure(f"{e} ({len(gone)} of {len(produced)} missing, "
                          f"(partition, offset) {gone[:4]}...)") from None

    try:
        produce_round(60)
        start("A")
        start("B")
        settled(["A", "B"])
        all_done()
        start("C")
        settled(["A", "B", "C"])
        produce_round(60)
        all_done()
        members["B"].stopping.set()
        members["B"].join(WAIT)
        check(not members["B"].is_alive(), "member B did not close in time")
        settled(["A", "C"])
        produce_round(60)
        all_done()
    finally:
        for m in members.values():
            m.stopping.set()
        for m in members.values():
            m.join(WAIT)
    for m in members.values():
        check(m.error is None, f"member {m.name}: {m.error!r}")
        check(m.assigned_ever, f"member {m.name} never got a partition")
    check(not any(m.is_alive() for m in members.values()), "a member did not close in time")
    committed_at = {}
    for who, p, o, ok in log:
        check((p, o) not in committed_at, f"partition {p} offset {o} processed by {who} "
              f"after {committed_at.get((p, o))} committed it")
        if ok:
            committed_at[(p, o)] = who
    last = {p: o + 1 for _, p, o, ok in log if ok}  # the last commit per partition
    got = cl.admin_committed(group, topic, parts)
    check(got == last, f"group offsets read back {got}, committed {last}")


def case_committed(cl, prefix):
    topic, group = f"{prefix}-committed", f"{prefix}-committed"
    cl.create_topic(topic, 3)
    placed = cl.produce(topic, [Rec(f"c{i}".encode(), b"c", (), T0 + i) for i in range(30)])
    held = {p: sum(1 for q, _ in placed if q == p) for p in range(3)}
    # Offsets within what each partition holds: a Kappa node refuses a
    # committed offset past a partition's end (docs/node.md), Kafka does not.
    want = {0: min(3, held[0]), 1: min(1, held[1]), 2: held[2] // 2}
    cl.commit_offsets(group, topic, want)
    got = cl.committed(group, topic, 3)
    check(got == want, f"committed() gave {got}, committed {want}")
    got = cl.admin_committed(group, topic, 3)
    check(got == want, f"admin offsets of partitions 0-2 gave {got}, committed {want}")
    try:  # the usual form: an OffsetFetch that names no topics
        got = cl.admin_committed(group, topic)
    except Exception as e:  # noqa: BLE001
        raise Failure(f"admin offsets of the whole group: {type(e).__name__}: {e}") from None
    check(got == want, f"admin offsets of the whole group gave {got}, committed {want}")
    cl.commit_offsets(group, topic, {1: held[1]})
    want[1] = held[1]
    got = cl.committed(group, topic, 3)
    check(got == want, f"after a second commit committed() gave {got}, want {want}")


def case_offsets_for_times(cl, prefix):
    topic = f"{prefix}-times"
    cl.create_topic(topic, 1)
    recs = [Rec(b"t", f"r{i}".encode(), (), T0 + 1000 * i) for i in range(5)]
    placed = cl.produce(topic, recs)
    offs = [o for _, o in placed]
    g = f"{prefix}-times-reader"
    for ts, want in [(T0 + 1500, offs[2]), (T0 + 2000, offs[2]), (T0 - 1, offs[0]),
                     (T0 + 4000, offs[4]), (T0 + 4001, None)]:
        got = cl.offset_for_time(topic, 0, ts, g)
        check(got == want, f"offset for time T0{ts - T0:+d} ms is {got}, want {want}")


def case_compression(cl, prefix, codec):
    topic = f"{prefix}-{codec}"
    cl.create_topic(topic, 1)
    recs = [Rec(f"key-{i % 7}".encode(), (f"{codec} record {i} " * 20).encode(),
                (("codec", codec.encode()), ("i", str(i).encode())), T0 + i) for i in range(200)]
    produced = with_positions(recs, cl.produce(topic, recs, compression=codec))
    check_read_back(cl, topic, 1, produced, f"{prefix}-{codec}-reader")


def case_transactions(cl, prefix):
    """Committed records are visible to read_committed, aborted ones and a
    fenced producer's never; a later commit shows the reader got past them."""
    topic, tid = f"{prefix}-txn", f"{prefix}-txn-id"
    cl.create_topic(topic, 2)

    def recs(tag):
        return [Rec(f"{tag}{i}".encode(), tag.encode(), (), T0 + i) for i in range(6)]

    first = cl.transactional(tid)
    try:
        first.begin()
        first.send(topic, recs("committed-"))
        first.commit()
        first.begin()
        first.send(topic, recs("aborted-"))
        first.abort()
        # The zombie: its records are sent, then a second producer with the
        # same transactional.id starts, and its commit must fail.
        first.begin()
        first.send(topic, recs("zombie-"))
        second = cl.transactional(tid)
        try:
            try:
                first.commit()
            except Exception:  # noqa: BLE001 - any refusal is the expected fencing
                pass
            else:
                raise Failure("the first producer committed after a second one took its transactional.id")
            second.begin()
            second.send(topic, recs("after-"))
            second.commit()
        finally:
            second.close()
    finally:
        first.close()

    got = cl.read(topic, 2, 12, f"{prefix}-txn-reader", committed_only=True)
    keys = sorted(r.key.decode() for r in got)
    want = sorted(r.key.decode() for r in recs("committed-") + recs("after-"))
    check(keys == want, f"read_committed saw {keys}, want {want}")


RESTART_KEYS = [f"restart-{i}".encode() for i in range(20)]


def restart_offsets():
    """The offsets committed before a restart: one short of each partition's end."""
    held = {p: sum(1 for k in RESTART_KEYS if key_partition(k, 2) == p) for p in range(2)}
    return {p: n - 1 for p, n in held.items() if n > 0}


def case_offsets_before_restart(cl, prefix):
    topic = group = f"{prefix}-restart"
    cl.create_topic(topic, 2)
    cl.produce(topic, [Rec(k, b"r", (), T0 + i) for i, k in enumerate(RESTART_KEYS)])
    cl.commit_offsets(group, topic, restart_offsets())
    got = cl.committed(group, topic, 2)
    check(got == restart_offsets(), f"committed() gave {got}, committed {restart_offsets()}")


def case_offsets_after_restart(cl, prefix):
    topic = group = f"{prefix}-restart"
    got = cl.committed(group, topic, 2)
    check(got == restart_offsets(), f"after the restart committed() gave {got}, committed {restart_offsets()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--client", required=True, choices=["confluent", "kafka-python"])
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--deadline", type=float, default=900, help="seconds before the watchdog ends the run")
    ap.add_argument("--restart-phase", choices=["before", "after"],
                    help="only commit offsets (before) or check them (after) around a broker restart")
    a = ap.parse_args()
    faulthandler.dump_traceback_later(a.deadline, exit=True)  # never hang a test run

    cases = [("produce-consume", case_produce_consume), ("murmur2-partitioning", case_murmur2),
             ("group-range", lambda cl, p: case_group(cl, p, "range"))]
    if a.client == "confluent":
        cases.append(("group-cooperative-sticky", lambda cl, p: case_group(cl, p, "cooperative-sticky")))
    cases += [("committed-offsets", case_committed), ("offsets-for-times", case_offsets_for_times)]
    cases += [(f"compression-{c}", lambda cl, p, c=c: case_compression(cl, p, c)) for c in CODECS]
    cases.append(("transactions", case_transactions))
    if a.restart_phase == "before":
        cases = [("offsets-before-restart", case_offsets_before_restart)]
    elif a.restart_phase == "after":
        cases = [("offsets-after-restart", case_offsets_after_restart)]

    passed = failed = 0
    try:
        cl = ConfluentClient(a.bootstrap) if a.client == "confluent" else KafkaPythonClient(a.bootstrap)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL connect: {type(e).__name__}: {e}")
        print("0 passed, 1 failed")
        return 1
    for name, fn in cases:
        try:
            fn(cl, f"{a.prefix}-{a.client}")
            print(f"ok {name}", flush=True)
            passed += 1
        except Exception as e:  # noqa: BLE001 - every error is a failed case
            reason = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
            print(f"FAIL {name}: {reason}", flush=True)
            failed += 1
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
