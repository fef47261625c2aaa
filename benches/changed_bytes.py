#!/usr/bin/env python3
"""Bytes of the key records that differ between two RDB files (stdlib only), for benches/compare.

  changed_bytes.py OLD.rdb NEW.rdb

Prints `changed_records=N changed_bytes=B new_total=T`: the records of NEW (from their
first prefix opcode to the end of their value) whose (db, key) is not in OLD or whose bytes
differ, and the bytes of all of NEW's records. This is the floor a record-aware backup of NEW
after OLD can reach before compression. Values are skipped by their lengths, as
src/rdb/records.rs does.
"""

import hashlib
import struct
import sys


class Rdb:
    def __init__(self, data):
        self.d, self.p = data, 9
        self.valkey = data.startswith(b"VALKEY")

    def u8(self):
        b = self.d[self.p]
        self.p += 1
        return b

    def length(self):
        """(plain length, None) or (None, encoding tag)."""
        b = self.u8()
        t = b >> 6
        if t == 0:
            return b & 0x3F, None
        if t == 1:
            return ((b & 0x3F) << 8) | self.u8(), None
        if b == 0x80:
            self.p += 4
            return struct.unpack(">I", self.d[self.p - 4:self.p])[0], None
        if b == 0x81:
            self.p += 8
            return struct.unpack(">Q", self.d[self.p - 8:self.p])[0], None
        if t == 3:
            return None, b & 0x3F
        raise ValueError("bad length byte %#x at %d" % (b, self.p - 1))

    def num(self):
        n, enc = self.length()
        if n is None:
            raise ValueError("expected a length at %d" % self.p)
        return n

    def string(self):
        """Skips a string; returns its raw bytes (compressed/int form as stored)."""
        start = self.p
        n, enc = self.length()
        if n is not None:
            self.p += n
        elif enc in (0, 1, 2):
            self.p += 1 << enc
        elif enc == 3:
            clen = self.num()
            self.num()
            self.p += clen
        else:
            raise ValueError("bad string encoding %d" % enc)
        return self.d[start:self.p]

    def repeat(self, body):
        for _ in range(self.num()):
            body()

    def value(self, ty):
        s = self.string
        if ty in (0, 9, 10, 11, 12, 13, 16, 17, 20, 23):
            s()
        elif ty in (1, 2, 14):
            self.repeat(s)
        elif ty == 3:
            def z1():
                s()
                n = self.u8()
                if n < 253:
                    self.p += n
            self.repeat(z1)
        elif ty == 5:
            self.repeat(lambda: (s(), setattr(self, "p", self.p + 8)))
        elif ty == 4:
            self.repeat(lambda: (s(), s()))
        elif ty == 18:
            self.repeat(lambda: (self.num(), s()))
        elif ty in (15, 19, 21):
            self.repeat(lambda: (s(), s()))
            for _ in range(3 if ty == 15 else 8):
                self.num()

            def group():
                s()
                self.num()
                self.num()
                if ty >= 19:
                    self.num()
                self.repeat(lambda: (setattr(self, "p", self.p + 24), self.num()))

                def consumer():
                    s()
                    self.p += 16 if ty == 21 else 8
                    self.repeat(lambda: setattr(self, "p", self.p + 16))
                self.repeat(consumer)
            self.repeat(group)
        elif ty == 7:
            self.num()
            self.module()
        elif ty == 22 and self.valkey:
            self.repeat(lambda: (s(), s(), setattr(self, "p", self.p + 8)))
        elif ty in (22, 24):
            if ty == 24:
                self.p += 8
            self.repeat(lambda: (self.num(), s(), s()))
        elif ty == 25:
            self.p += 8
            s()
        else:
            raise ValueError("value type %d" % ty)

    def module(self):
        while True:
            op = self.num()
            if op == 0:
                return
            if op in (1, 2):
                self.num()
            elif op == 3:
                self.p += 4
            elif op == 4:
                self.p += 8
            elif op == 5:
                self.string()
            else:
                raise ValueError("module opcode %d" % op)

    def records(self):
        """Yields (db, key bytes as stored, record bytes) for every record."""
        db, start = 0, None
        while True:
            if start is None:
                start = self.p
            op = self.u8()
            if op == 0xFF:
                return
            if op == 0xFE:
                db = self.num()
            elif op == 0xFD:
                self.p += 4
                continue
            elif op == 0xFC:
                self.p += 8
                continue
            elif op == 0xF8:
                self.num()
                continue
            elif op == 0xF9:
                self.p += 1
                continue
            elif op == 0xF3:
                self.string()
                self.repeat(lambda: (self.num(), self.num()))
                continue
            elif op == 0xFB:
                self.num()
                self.num()
            elif op == 0xFA:
                self.string()
                self.string()
            elif op == 0xF4:
                self.num()
                self.num()
                self.num()
            elif op == 0xF5:
                self.string()
            elif op == 0xF7:
                self.num()
                self.num()
                self.num()
                self.module()
            else:
                key = self.string()
                self.value(op)
                yield db, key, self.d[start:self.p]
            start = None


def main():
    old_path, new_path = sys.argv[1:3]
    with open(old_path, "rb") as f:
        old = {(db, key): hashlib.blake2b(rec, digest_size=16).digest() for db, key, rec in Rdb(f.read()).records()}
    changed = count = total = 0
    with open(new_path, "rb") as f:
        for db, key, rec in Rdb(f.read()).records():
            total += len(rec)
            if old.get((db, key)) != hashlib.blake2b(rec, digest_size=16).digest():
                changed += len(rec)
                count += 1
    print("changed_records=%d changed_bytes=%d new_total=%d" % (count, changed, total))


if __name__ == "__main__":
    main()
