#!/usr/bin/env python3
"""consume.py: an example program reading the fleet's status events from OPS_EVENTS.

It reads by direct get (no consumer: the shipped `reader` may create none), from a stream
sequence (replay) or only new events, decodes each protobuf Event and prints one JSON line per
event; see docs/events-api.md. The message classes are generated at
start from the .proto files (grpcio-tools bundles protoc), so they always match the wire.

    python3 consume.py --nats tls://nats-1:4222 --nkey reader.nk --inbox-prefix _INBOX.reader \
        --tls-ca ca.pem --tls-cert operator.pem --tls-key operator-key.pem \
        --since-seq 1200 --host web-01 --kind disk --count 10 --timeout 30
"""

import argparse
import asyncio
import importlib
import json
import os
import re
import ssl
import sys
import tempfile
import uuid

import nats
from nats.js.errors import NotFoundError

STREAM = "OPS_EVENTS"
COORDINATOR_MODULE = "coordinator"
# Exit status when --count events did not come within --timeout.
EXIT_SHORT = 3
# Seconds the first connection may take.
CONNECT_WAIT = 20
# Seconds to wait when nothing new is at the cursor: doubled while idle, up to IDLE_MAX.
IDLE_MIN, IDLE_MAX = 0.05, 0.5
# Seconds to wait after an error (server restart, connection lost): doubled, up to ERROR_MAX.
ERROR_MIN, ERROR_MAX = 0.2, 5.0
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.join(HERE, "..", "..", "proto", "proto")


def load_event_class(proto_dir):
    """Generates opsfleet/v1/event_pb2.py from proto_dir into a temp dir and imports Event."""
    from grpc_tools import protoc  # bundles protoc and the well-known types

    files = [
        os.path.join("opsfleet", "v1", f)
        for f in sorted(os.listdir(os.path.join(proto_dir, "opsfleet", "v1")))
        if f.endswith(".proto")
    ]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="opsfleet-pb2-") as out:
        rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}", *files])
        if rc != 0:
            sys.exit(f"consume.py: protoc could not compile {proto_dir} (status {rc})")
        sys.path.insert(0, out)
        try:
            return importlib.import_module("opsfleet.v1.event_pb2").Event
        finally:
            sys.path.remove(out)


def body_kinds(event_cls):
    """(kind, field number) of every body of the Event oneof, in field order."""
    fields = event_cls.DESCRIPTOR.oneofs_by_name["body"].fields
    return [(f.name, f.number) for f in sorted(fields, key=lambda f: f.number)]


def body_class(event_cls, kind):
    """coordinator (fields 100..), lifecycle (40..59) or agent, as the .proto numbers them."""
    number = event_cls.DESCRIPTOR.fields_by_name[kind].number
    if number >= 100:
        return "coordinator"
    if 40 <= number < 60:
        return "lifecycle"
    return "agent"


def validate(ev):
    """The envelope checks of opsfleet-proto's EventEnvelope; returns the reason or None."""
    for field in ("id", "incarnation"):
        try:
            uuid.UUID(getattr(ev, field))
        except ValueError:
            return f"field `{field}` is not a UUID"
    for field in ("host", "module"):
        if not TOKEN.match(getattr(ev, field)):
            return f"field `{field}` is not a valid name"
    if ev.seq == 0:
        return "field `seq` must be at least 1"
    if ev.WhichOneof("body") is None:
        return "field `body` is missing"
    return None


def from_its_publisher(event_cls, subject, ev):
    """The subject vouches for the publisher (NATS permissions); the envelope must agree."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != "ops":
        return False
    space, name, kind = parts[1], parts[2], parts[3]
    body = ev.WhichOneof("body")
    if name != ev.host or kind != body:
        return False
    cls = body_class(event_cls, body)
    if space == "evt":
        return cls != "coordinator" and ev.module != COORDINATOR_MODULE
    if space == "coord":
        return ev.module == COORDINATOR_MODULE and (
            cls == "coordinator" or body == "command_expired"
        )
    return False


def summary(ev):
    """A few body fields (enums as their wire integers), as the Rust example prints them."""
    body = ev.WhichOneof("body")
    if body == "heartbeat":
        h = ev.heartbeat
        return {"uptime_ms": h.uptime_ms, "agent_version": h.agent_version, "modules": len(h.modules)}
    if body == "disk":
        d = ev.disk
        return {"path": d.path, "used_basis_points": d.used_basis_points, "level": d.level}
    if body == "module_state":
        return {"module": ev.module_state.module, "state": ev.module_state.state}
    if body == "leadership":
        lead = ev.leadership
        return {"coordinator": lead.coordinator, "role": lead.role, "epoch": lead.epoch}
    return {}


def event_line(stream_seq, subject, ev):
    return {
        "stream_seq": stream_seq,
        "subject": subject,
        "host": ev.host,
        "kind": ev.WhichOneof("body"),
        "module": ev.module,
        "seq": ev.seq,
        "incarnation": str(uuid.UUID(ev.incarnation)),
        "id": str(uuid.UUID(ev.id)),
        "time_unix_ms": ev.time_unix_ms,
        "body": summary(ev),
    }


class Progress:
    """What survives a reconnect: where to resume, what was printed, the dedup state."""

    def __init__(self):
        self.last_read = None
        self.printed = 0
        self.highest = {}  # (host, incarnation) -> highest seq seen

    def cursor(self, start):
        """The next stream sequence to ask for."""
        return start if self.last_read is None else self.last_read + 1

    def first_time(self, ev):
        key = (ev.host, ev.incarnation)
        if key in self.highest and ev.seq <= self.highest[key]:
            return False
        self.highest[key] = ev.seq
        return True


async def connect(args, progress, start):
    async def error_cb(e):
        print(f"consume.py: nats: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    async def reconnected_cb():
        print(f"consume.py: reconnected to NATS; resuming at stream seq "
              f"{progress.cursor(start[0])}", file=sys.stderr, flush=True)

    opts = {
        "servers": [args.nats],
        "name": "consume.py",
        "max_reconnect_attempts": -1,
        "error_cb": error_cb,
        "reconnected_cb": reconnected_cb,
    }
    if args.nkey:
        opts["nkeys_seed"] = args.nkey
    if args.inbox_prefix:
        opts["inbox_prefix"] = args.inbox_prefix
    if args.tls_ca:
        ctx = ssl.create_default_context(cafile=args.tls_ca)
        if args.tls_cert:
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        opts["tls"] = ctx
    # nats-py retries the first connect as often as reconnects (forever here): bound it.
    try:
        return await asyncio.wait_for(nats.connect(**opts), CONNECT_WAIT)
    except asyncio.TimeoutError:
        sys.exit(f"consume.py: cannot connect to {args.nats} within {CONNECT_WAIT} s")


def done(args, progress):
    return args.count is not None and progress.printed >= args.count


def lost_to_retention(cursor, first_seq):
    """What to say when the stream no longer holds the events from cursor on, or None."""
    if first_seq > cursor:
        return (f"stream seqs {cursor}..{first_seq - 1} were lost to retention (the stream "
                f"starts at {first_seq}); take a fresh snapshot before trusting derived state")
    return None


async def consume(args, event_cls, progress):
    """Direct gets from --since-seq (or the end of the stream) until --count: the next message
    at or after the cursor matching the filter, printed, the cursor moved past it; when there
    is none yet, wait (50 ms doubling to 500 ms) and ask again; after an error, retry from the
    same cursor after a backoff."""
    start = [1]  # known once the stream's info is read; the reconnect callback reads it
    nc = await connect(args, progress, start)
    js = nc.jetstream(timeout=10)
    info = await js.stream_info(STREAM)
    if not info.config.allow_direct:
        sys.exit("consume.py: OPS_EVENTS does not allow direct get (allow_direct): start a "
                 "coordinator of this version, whose topology sets it")
    if args.since_seq is not None:
        start[0] = max(args.since_seq, 1)
    else:
        # Pinned to a sequence, so a reconnect before the first event misses nothing.
        start[0] = info.state.last_seq + 1
    lost = lost_to_retention(start[0], info.state.first_seq)
    if lost:
        print(f"consume.py: {lost}", file=sys.stderr, flush=True)
    subject = f"ops.*.{args.host or '*'}.{args.kind or '*'}"
    idle, wait = IDLE_MIN, ERROR_MIN
    while not done(args, progress):
        cursor = progress.cursor(start[0])
        try:
            # $JS.API.DIRECT.GET.OPS_EVENTS {"seq": cursor, "next_by_subj": subject}
            msg = await js.get_msg(STREAM, seq=cursor, subject=subject, next=True, direct=True)
        except NotFoundError:  # nothing at or after the cursor yet
            await asyncio.sleep(idle)
            idle = min(idle * 2, IDLE_MAX)
            continue
        except Exception as e:  # a server restart, a lost connection: ask again
            print(f"consume.py: {type(e).__name__}: {e}; resuming at stream seq {cursor} "
                  f"in {wait:.1f}s", file=sys.stderr, flush=True)
            await asyncio.sleep(wait)
            wait = min(wait * 2, ERROR_MAX)
            continue
        idle, wait = IDLE_MIN, ERROR_MIN
        if msg.seq is None or msg.seq < cursor:
            print(f"consume.py: asked for stream seq {cursor} or later, got {msg.seq}; "
                  f"asking again", file=sys.stderr, flush=True)
            await asyncio.sleep(ERROR_MIN)
            continue
        handle(msg, event_cls, progress)
    await nc.close()


def handle(msg, event_cls, progress):
    """Prints msg if it is a valid event its subject may carry, seen for the first time; the
    cursor moves past it either way."""
    stream_seq = msg.seq
    progress.last_read = stream_seq
    ev = event_cls()
    try:
        ev.ParseFromString(msg.data or b"")
    except Exception as e:
        print(f"consume.py: stream seq {stream_seq} is not a protobuf Event: {e}", file=sys.stderr)
        return
    problem = validate(ev)
    if problem:
        print(f"consume.py: stream seq {stream_seq} is not a valid event: {problem}", file=sys.stderr)
        return
    if not from_its_publisher(event_cls, msg.subject, ev):
        print(f"consume.py: stream seq {stream_seq}: a {ev.WhichOneof('body')} its subject "
              f"{msg.subject} may not carry", file=sys.stderr)
        return
    if not progress.first_time(ev):
        return
    print(json.dumps(event_line(stream_seq, msg.subject, ev)), flush=True)
    progress.printed += 1


def parse_args():
    p = argparse.ArgumentParser(description="Print the fleet's status events as JSON lines")
    p.add_argument("--nats", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--nkey", help="file holding the identity's nkey seed (SU...)")
    p.add_argument("--inbox-prefix", help="reply subject prefix (reader: _INBOX.reader)")
    p.add_argument("--tls-ca", help="CA certificate the server's certificate chains to")
    p.add_argument("--tls-cert", help="client certificate (mutual TLS), with --tls-key")
    p.add_argument("--tls-key")
    p.add_argument("--since-seq", type=int, help="start at this stream sequence (replay)")
    p.add_argument("--host", help="only this host's (or coordinator's) events")
    p.add_argument("--kind", help="only this kind (heartbeat, disk, leadership, ...)")
    p.add_argument("--count", type=int, help="stop after printing this many events")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR, help="where opsfleet/v1/*.proto are")
    p.add_argument("--list-kinds", action="store_true",
                   help="print every body kind and its field number, then exit")
    args = p.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    return args


async def main():
    args = parse_args()
    event_cls = load_event_class(args.proto_dir)
    if args.list_kinds:
        for kind, number in body_kinds(event_cls):
            print(f"{kind} {number}")
        return 0
    progress = Progress()
    try:
        await asyncio.wait_for(consume(args, event_cls, progress), args.timeout)
    except asyncio.TimeoutError:
        if args.count is not None and progress.printed < args.count:
            print(f"consume.py: {progress.printed} of {args.count} events within "
                  f"{args.timeout} s", file=sys.stderr)
            return EXIT_SHORT
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
