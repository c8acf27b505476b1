#!/usr/bin/env python3
"""Per-merchant daily totals of approved card authorizations (by the UTC day
of the decision, the event's timestamp).

A service of the card-limits system written with no Kappa code at all: a
stock Kafka client (confluent-kafka) reads the `events` topic that the
decision service writes, from any Kafka-protocol broker -- `card-limits
serve --kafka-listen`'s log, or a Kafka cluster -- in a consumer group of
its own.

The totals live in a SQLite file together with the offsets they include,
written in one transaction per batch, so a restart (even after SIGKILL)
goes on from exactly what the file holds: nothing is counted twice or
missed. The offsets are also committed to the group, so Kafka tools and the
Kappa console see its lag.

    merchant_totals.py --bootstrap 127.0.0.1:9092 --db totals.sqlite [--http 127.0.0.1:8090]
    merchant_totals.py --bootstrap 127.0.0.1:9092 --db totals.sqlite --once   # catch up, print, exit

`--http` answers GET /totals with the totals as JSON; `--once` reads up to
the ends the topic had when it started, prints the totals and the offsets
they include as one JSON object, and exits.
"""

import argparse
import datetime
import json
import signal
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

DAY_MS = 86_400_000
DECISIONS = {"authorization-approved", "authorization-declined"}


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS totals (merchant TEXT NOT NULL, day TEXT NOT NULL,"
        " approved_cents INTEGER NOT NULL, approved INTEGER NOT NULL, declined INTEGER NOT NULL,"
        " PRIMARY KEY (merchant, day))"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL,"
        " next INTEGER NOT NULL, PRIMARY KEY (topic, partition))"
    )
    return db


def stored_offsets(db, topic):
    return dict(db.execute("SELECT partition, next FROM offsets WHERE topic = ?", (topic,)))


def decision(value):
    """(merchant, day, approved, amount) of a first decision, or None."""
    try:
        event = json.loads(value)
    except (TypeError, ValueError):
        return None
    if not isinstance(event, dict) or event.get("action") not in DECISIONS:
        return None
    data = event.get("data") or {}
    # A repeated authorization is answered again but decided once.
    if "duplicate" in data:
        return None
    merchant, amount, at = data.get("merchant"), data.get("amount"), event.get("timestamp")
    if not isinstance(merchant, str) or not isinstance(amount, int) or not isinstance(at, int):
        return None
    day = datetime.datetime.fromtimestamp(at // DAY_MS * 86_400, datetime.timezone.utc).date().isoformat()
    return merchant, day, event["action"] == "authorization-approved", amount


def apply_batch(db, topic, messages):
    """Adds a batch's decisions and moves the offsets past it, in one transaction."""
    nexts = {}
    db.execute("BEGIN IMMEDIATE")
    try:
        for m in messages:
            nexts[m.partition()] = m.offset() + 1
            d = decision(m.value())
            if d is None:
                continue
            merchant, day, approved, amount = d
            db.execute(
                "INSERT INTO totals VALUES (?, ?, ?, ?, ?) ON CONFLICT (merchant, day) DO UPDATE SET"
                " approved_cents = approved_cents + excluded.approved_cents,"
                " approved = approved + excluded.approved, declined = declined + excluded.declined",
                (merchant, day, amount if approved else 0, int(approved), int(not approved)),
            )
        for partition, next_offset in nexts.items():
            db.execute(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) DO UPDATE SET next = excluded.next",
                (topic, partition, next_offset),
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return nexts


def totals(db):
    rows = db.execute(
        "SELECT merchant, day, approved_cents, approved, declined FROM totals ORDER BY merchant, day"
    )
    return [
        {"merchant": m, "day": d, "approved_cents": c, "approved": a, "declined": n}
        for m, d, c, a, n in rows
    ]


def serve_http(addr, db, lock):
    host, _, port = addr.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/totals":
                self.send_error(404, "only GET /totals is served")
                return
            with lock:
                body = json.dumps({"totals": totals(db)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True, help="host:port of the broker")
    p.add_argument("--topic", default="events")
    p.add_argument("--group", default="merchant-totals")
    p.add_argument("--db", required=True, help="the SQLite file that keeps the totals and their offsets")
    p.add_argument("--http", help="answer GET /totals at host:port")
    p.add_argument("--once", action="store_true", help="catch up with the topic's current end, print, exit")
    p.add_argument("--property", action="append", default=[], metavar="K=V",
                   help="a client property (security settings, say); repeatable")
    args = p.parse_args()

    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "broker.address.family": "v4",
    }
    for kv in args.property:
        k, sep, v = kv.partition("=")
        if not sep:
            p.error(f"--property {kv!r} is not K=V")
        config[k] = v

    db = open_db(args.db)
    lock = threading.Lock()
    consumer = Consumer(config)

    def on_assign(c, partitions):
        # The file, not the group, says where each partition goes on.
        stored = stored_offsets(db, args.topic)
        for tp in partitions:
            if tp.partition in stored:
                tp.offset = stored[tp.partition]
        c.assign(partitions)

    metadata = consumer.list_topics(args.topic, timeout=30)
    topic_meta = metadata.topics.get(args.topic)
    if topic_meta is None or topic_meta.error is not None:
        sys.exit(f"error: topic {args.topic!r} is not on {args.bootstrap}: "
                 f"{topic_meta.error if topic_meta else 'missing'} (start card-limits serve --kafka-listen first)")
    partitions = sorted(topic_meta.partitions)
    ends = {}
    for partition in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(args.topic, partition), timeout=30)
        ends[partition] = high
    consumer.subscribe([args.topic], on_assign=on_assign)

    server = serve_http(args.http, db, lock) if args.http else None
    print(f"merchant-totals following {args.topic} ({len(partitions)} partitions) on {args.bootstrap}"
          + (f", answering at http://{args.http} /totals" if args.http else ""), flush=True)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    caught_up = False
    try:
        while not stopping.is_set():
            messages = consumer.consume(num_messages=1000, timeout=0.5)
            good = []
            for m in messages:
                err = m.error()
                if err is None:
                    good.append(m)
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
            if good:
                with lock:
                    nexts = apply_batch(db, args.topic, good)
                consumer.commit(
                    offsets=[TopicPartition(args.topic, p, o) for p, o in nexts.items()],
                    asynchronous=True,
                )
            if not caught_up:
                stored = stored_offsets(db, args.topic)
                # Offsets past the last record count too: transaction markers take one.
                if all(stored.get(p, 0) >= end or consumer.position([TopicPartition(args.topic, p)])[0].offset >= end
                       for p, end in ends.items()):
                    caught_up = True
                    if args.once:
                        with lock:
                            out = {"totals": totals(db), "offsets": stored_offsets(db, args.topic)}
                        print(json.dumps(out), flush=True)
                        break
                    print("ready: caught up", flush=True)
    finally:
        consumer.close()
        if server is not None:
            server.shutdown()
        db.close()


if __name__ == "__main__":
    main()
