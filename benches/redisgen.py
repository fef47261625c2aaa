#!/usr/bin/env python3
"""Deterministic Redis data set generator for benches/compare (stdlib only).

Writes the RESP protocol to stdout for `redis-cli --pipe`:

  redisgen.py fill   --seed S --start A --target-bytes B   keys A.. until ~B payload bytes
  redisgen.py change --seed S --count N --fraction 0.01    rewrite 1% of keys 0..N-1
  redisgen.py change ... --shape churn                      the same 1%, as churn (below)
  redisgen.py append --seed S --start N --keys M           add keys N..N+M-1

`fill` prints the next free key index on stderr as `next=<i>`.

Key i has a type fixed by a hash of i, so `change` rewrites a key with a new
value of the same type and similar size. Mix by key count: JSON-like documents
25%, base64-ish tokens 14%, repetitive log text 10%, integer counters 10%, user
profile hashes (5-20 fields) 20%, queues (lists of 10-200 items) 9%, sets 6%,
leaderboards (sorted sets) 6%; plus four streams that get one entry per 20 keys.

Shape `churn` (for `change`): of the picked keys a quarter is deleted, for another
quarter a new key is added (a fresh index: another name and place in the file), and half
is rewritten with values that change length (strings grow or shrink by 50-200%,
collections gain or lose a third of their elements), so key records move and vanish.
Deletions and additions are equal in number: the key table does not resize.

A fourth mode touches keys of a foreign data set (for `compare --rdb`):

  redisgen.py touch --seed S --port P --fraction 0.01      via a small RESP client
"""

import argparse
import base64
import random
import socket
import sys

WORDS = (
    "alpha beta gamma delta epsilon zeta theta lambda sigma omega redis cache "
    "session user order cart item price total status active pending shipped "
    "delivered error warning info debug request response latency region eu us "
    "asia mobile desktop web android ios premium free trial enterprise team "
    "admin editor viewer guest login logout click view purchase refund search"
).split()
COUNTRIES = "DE FR US GB JP BR IN CA AU NL SE ES IT PL CH AT BE DK NO FI".split()
LOG_LINES = [
    b"GET /api/v1/items?page=%d 200 12ms\n",
    b"POST /api/v1/orders 201 48ms user=%d\n",
    b"INFO worker-%d processed batch ok\n",
    b"WARN slow query took %dms on replica-2\n",
    b"DEBUG cache miss key=item:%d fallback=db\n",
]
TYPES = (
    [("doc", 25), ("tok", 14), ("log", 10), ("cnt", 10), ("user", 20), ("queue", 9), ("set", 6), ("board", 6)]
)
TYPE_TABLE = [name for name, weight in TYPES for _ in range(weight)]
assert len(TYPE_TABLE) == 100
STREAMS = 4
STREAM_EVERY = 20


def key_type(i):
    """The type of key i: a fixed function of i (splitmix64 hash)."""
    z = (i + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return TYPE_TABLE[(z ^ (z >> 31)) % 100]


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def words(rng, n):
    return " ".join(rng.choices(WORDS, k=n))


def doc(rng, i):
    n_items = rng.randint(1, 30)
    items = ",".join(
        '{"sku":"SKU-%06d","qty":%d,"price":%.2f,"tags":["%s","%s"]}'
        % (rng.randrange(10**6), rng.randint(1, 9), rng.uniform(1, 500), rng.choice(WORDS), rng.choice(WORDS))
        for _ in range(n_items)
    )
    return (
        '{"id":%d,"type":"order","status":"%s","customer":{"id":%d,"country":"%s"},'
        '"created":"2024-%02d-%02dT%02d:%02d:%02dZ","note":"%s","items":[%s]}'
        % (
            i, rng.choice(WORDS), rng.randrange(10**7), rng.choice(COUNTRIES),
            rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
            words(rng, rng.randint(2, 20)), items,
        )
    ).encode()


def token(rng):
    return base64.b64encode(rng.randbytes(rng.randint(12, 96)))


def log_text(rng):
    return b"".join(rng.choice(LOG_LINES) % rng.randrange(10000) for _ in range(rng.randint(2, 60)))


def user_fields(rng, i):
    fields = [
        b"name", b"user%d" % i, b"email", b"user%d@example.com" % i,
        b"country", rng.choice(COUNTRIES).encode(), b"plan", rng.choice(WORDS).encode(),
        b"created", b"%d" % rng.randrange(1_500_000_000, 1_700_000_000),
    ]
    for f in range(rng.randint(0, 15)):
        fields += [b"f%d" % f, words(rng, rng.randint(1, 12)).encode() if f % 3 else token(rng)]
    return fields


def key_commands(rng, i, kind):
    """Commands that (re)create key i of the given kind."""
    k = b"%s:%d" % (kind.encode(), i)
    if kind == "doc":
        return [resp(b"SET", k, doc(rng, i))]
    if kind == "tok":
        return [resp(b"SET", k, token(rng))]
    if kind == "log":
        return [resp(b"SET", k, log_text(rng))]
    if kind == "cnt":
        return [resp(b"SET", k, b"%d" % rng.randrange(10**9))]
    if kind == "user":
        return [resp(b"DEL", k), resp(b"HSET", k, *user_fields(rng, i))]
    if kind == "queue":
        items = [b'{"job":%d,"task":"%s","attempt":%d}' % (rng.randrange(10**6), rng.choice(WORDS).encode(), rng.randint(0, 5))
                 for _ in range(rng.randint(10, 200))]
        return [resp(b"DEL", k), resp(b"RPUSH", k, *items)]
    if kind == "set":
        members = [b"member:%d" % rng.randrange(10**6) for _ in range(rng.randint(5, 60))]
        return [resp(b"DEL", k), resp(b"SADD", k, *members)]
    if kind == "board":
        args = []
        for _ in range(rng.randint(10, 200)):
            args += [b"%d" % rng.randrange(10**6), b"player:%d" % rng.randrange(10**7)]
        return [resp(b"DEL", k), resp(b"ZADD", k, *args)]
    raise ValueError(kind)


def stream_entry(rng, i):
    k = b"stream:events:%d" % (i // STREAM_EVERY % STREAMS)
    return resp(b"XADD", k, b"%d-0" % (i + 1), b"event", rng.choice(WORDS).encode(), b"user", b"%d" % rng.randrange(10**6),
                b"payload", words(rng, rng.randint(3, 30)).encode())


def emit_key(rng, i, out):
    n = 0
    for c in key_commands(rng, i, key_type(i)):
        out.append(c)
        n += len(c)
    if i % STREAM_EVERY == 0:
        c = stream_entry(rng, i)
        out.append(c)
        n += len(c)
    return n


def flush(out, w):
    w.write(b"".join(out))
    out.clear()


def cmd_fill(a):
    rng = random.Random("%d:fill:%d" % (a.seed, a.start))
    w = sys.stdout.buffer
    out, total, i = [], 0, a.start
    while total < a.target_bytes:
        total += emit_key(rng, i, out)
        i += 1
        if len(out) > 4096:
            flush(out, w)
    flush(out, w)
    w.flush()
    print("next=%d" % i, file=sys.stderr)


def cmd_append(a):
    rng = random.Random("%d:append:%d" % (a.seed, a.start))
    w = sys.stdout.buffer
    out = []
    for i in range(a.start, a.start + a.keys):
        emit_key(rng, i, out)
        if len(out) > 4096:
            flush(out, w)
    flush(out, w)
    w.flush()


def resized(rng, i, kind):
    """Commands that rewrite key i with a value of a clearly different length."""
    cmds = key_commands(rng, i, kind)
    k = b"%s:%d" % (kind.encode(), i)
    if kind in ("doc", "tok", "log", "cnt"):
        # A string grows or shrinks: keep a prefix of 30-60%, or append 50-200% more.
        value = cmds[0].split(b"\r\n")[-2]
        if rng.random() < 0.5:
            value = value[: max(1, int(len(value) * rng.uniform(0.3, 0.6)))]
        else:
            value = value + words(rng, max(1, int(len(value) * rng.uniform(0.5, 2.0)) // 6)).encode()
        return [resp(b"SET", k, value)]
    # Collections: a fresh value, then a third more elements or a third fewer.
    if kind == "user":
        extra = []
        for f in range(rng.randint(3, 10)):
            extra += [b"x%d" % f, token(rng)]
        return cmds + [resp(b"HSET", k, *extra)]
    if kind == "queue":
        return cmds + [resp(b"LTRIM", k, b"0", b"%d" % rng.randint(3, 60))]
    if kind == "set":
        return cmds + [resp(b"SADD", k, *[b"member:%d" % rng.randrange(10**6) for _ in range(rng.randint(5, 30))])]
    return cmds + [resp(b"ZREMRANGEBYRANK", k, b"0", b"%d" % rng.randint(3, 60))]


def cmd_change(a):
    rng = random.Random("%d:change:%d" % (a.seed, a.count))
    n = max(1, int(a.count * a.fraction))
    w = sys.stdout.buffer
    out = []
    for j, i in enumerate(sorted(rng.sample(range(a.count), n))):
        kind = key_type(i)
        if a.shape == "mixed":
            out.extend(key_commands(rng, i, kind))
        elif j % 4 == 0:
            out.append(resp(b"DEL", b"%s:%d" % (kind.encode(), i)))
        elif j % 4 == 1:
            # A new key, under an index past the data set (so another name and place in the
            # file); no stream entry (its id would fall behind the streams' last ids).
            j = 2_000_000_000 + i
            out.extend(key_commands(rng, j, key_type(j)))
        else:
            out.extend(resized(rng, i, kind))
        if len(out) > 4096:
            flush(out, w)
    flush(out, w)
    w.flush()


class Client:
    """A minimal pipelining RESP client for `touch`."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def send(self, cmds):
        self.s.sendall(b"".join(resp(*c) for c in cmds))
        return [self.read() for _ in cmds]

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b":"):
            return rest
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)


def cmd_touch(a):
    """Changes ~fraction of the keys of any data set, keeping each key's type."""
    rng = random.Random("%d:touch" % a.seed)
    c = Client(a.port)
    keys, cursor = [], b"0"
    while True:
        cursor, batch = c.send([[b"SCAN", cursor, b"COUNT", b"1000"]])[0]
        keys += batch
        if cursor == b"0":
            break
    keys.sort()
    picked = rng.sample(keys, max(1, int(len(keys) * a.fraction))) if keys else []
    for start in range(0, len(picked), 500):
        batch = picked[start:start + 500]
        types = c.send([[b"TYPE", k] for k in batch])
        cmds = []
        for k, t in zip(batch, types):
            if t == b"string":
                cmds.append([b"SETRANGE", k, b"0", token(rng)])
            elif t == b"hash":
                cmds.append([b"HSET", k, b"rdbvault-bench", token(rng)])
            elif t == b"list":
                cmds.append([b"LMOVE", k, k, b"LEFT", b"RIGHT"])
            elif t == b"set":
                cmds.append([b"SADD", k, token(rng)])
            elif t == b"zset":
                cmds.append([b"ZADD", k, b"%d" % rng.randrange(10**6), token(rng)])
            elif t == b"stream":
                cmds.append([b"XADD", k, b"*", b"rdbvault-bench", token(rng)])
        if cmds:
            c.send(cmds)
    print("touched=%d of %d keys" % (len(picked), len(keys)), file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--start", type=int, default=0)
    f.add_argument("--target-bytes", type=int, required=True)
    c = sub.add_parser("change")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--fraction", type=float, default=0.01)
    c.add_argument("--shape", choices=("mixed", "churn"), default="mixed")
    ap = sub.add_parser("append")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, required=True)
    ap.add_argument("--keys", type=int, required=True)
    t = sub.add_parser("touch")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--fraction", type=float, default=0.01)
    a = p.parse_args()
    {"fill": cmd_fill, "change": cmd_change, "append": cmd_append, "touch": cmd_touch}[a.cmd](a)


if __name__ == "__main__":
    main()
