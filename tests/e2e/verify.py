#!/usr/bin/env python3
"""Accounts for every produced id of an end-to-end run.

Inputs are plain files, so the same check serves the local scenarios and the compose
deployment's checker:

  --input FILE       what was produced, read back from the input topic with
                     kcat -f '%p\\t%o\\t%s\\n' (partition, offset, payload)
  --generate N[:STALL[:FAIL[:FIRST]]]
                     or: the ids `taskloop produce` generates for these ratios
                     (same even spread as cmd/taskloop/load.c), when the transport
                     cannot be read back (ZeroMQ)
  --record FILE      a record file of the `work` handler: one id=NNNNNN per line
  --stalled FILE     the stall target read back, 'headers<TAB>payload' per line
  --dlq FILE         the error target read back, same shape
  --retries R        on_error.retries: a dead letter must carry tl-attempt R+1
  --origin T         the tl-origin-topic every reroute must carry
  --max-dup D        duplicates allowed (in-flight limit x crashes; 0 otherwise)

Each payload starts with id=NNNNNN and may carry the word `stall` or `fail`. A `stall`
message must be on the stall target (tl-reason=stalled), a `fail` message on the error
target (tl-reason=failed, tl-attempt=R+1), every other one in a record file; a plain
or `fail` message whose attempt was slow enough to stall under load (a starved machine)
may be on the stall target too (it is counted as plain-but-stalled, not failed); a plain
one on the stall target and completed once (its handler finished after the reroute)
is "completed late", not a duplicate. Prints one summary line; exits 1 when an id is lost, misplaced,
unexpected, carries wrong headers, or duplicates exceed the limit.
"""
import argparse
import math
import re
import sys
from collections import Counter

# cmd/taskloop/load.c spreads `fail` markers with this phase (stall ones with 0).
FAIL_PHASE = 0.618034

ID_RE = re.compile(r"(?:^|\s)(id=\d+)")


def marker(payload):
    words = payload.split()
    if "stall" in words:
        return "stall"
    if "fail" in words:
        return "fail"
    return "plain"


def id_of(payload):
    m = ID_RE.search(payload)
    return m.group(1) if m else None


def read_input(path):
    """id -> (marker, partition, offset) from a 'P<TAB>O<TAB>payload' dump."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t", 2)
            if len(parts) != 3:
                continue
            i = id_of(parts[2])
            if i:
                out[i] = (marker(parts[2]), parts[0], parts[1])
    return out


def spread_hits(ratio, phase, i):
    if ratio <= 0.0:
        return False
    return math.floor((i + 1) * ratio + phase) > math.floor(i * ratio + phase)


def generate(spec):
    f = (spec.split(":") + ["0", "0", "0"])[:4]
    n, stall, fail, first = int(f[0]), float(f[1]), float(f[2]), int(f[3])
    out = {}
    for i in range(n):
        m = "stall" if spread_hits(stall, 0.0, i) else "fail" if spread_hits(fail, FAIL_PHASE, i) else "plain"
        out["id=%06d" % (first + i)] = (m, None, None)
    return out


def read_records(paths):
    c = Counter()
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.strip()
                    if re.fullmatch(r"id=\d+", line):
                        c[line] += 1
        except FileNotFoundError:
            pass
    return c


def parse_headers(text):
    h = {}
    for kv in text.split(","):
        if "=" in kv:
            k, v = kv.split("=", 1)
            h.setdefault(k, v)
    return h


def read_reroutes(paths):
    """[(id, headers, payload)] from 'headers<TAB>payload' dumps."""
    out = []
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if not line:
                        continue
                    hdr, _, payload = line.partition("\t")
                    out.append((id_of(payload), parse_headers(hdr), payload))
        except FileNotFoundError:
            pass
    return out


def check_headers(h, reason, origin, where, retries):
    """A list of what is wrong with one reroute's tl-* headers."""
    bad = []
    if h.get("tl-reason") != reason:
        bad.append("tl-reason=%r, want %r" % (h.get("tl-reason"), reason))
    if origin is not None and h.get("tl-origin-topic") != origin:
        bad.append("tl-origin-topic=%r, want %r" % (h.get("tl-origin-topic"), origin))
    for k in ("tl-origin-partition", "tl-origin-offset", "tl-attempt", "tl-first-seen-ms"):
        if not re.fullmatch(r"-?\d+", h.get(k, "")):
            bad.append("%s=%r is not a number" % (k, h.get(k)))
    if "tl-error" not in h:
        bad.append("no tl-error")
    if where and where[1] is not None:
        if (h.get("tl-origin-partition"), h.get("tl-origin-offset")) != (where[1], where[2]):
            bad.append("origin %s/%s, but it was produced at %s/%s" % (
                h.get("tl-origin-partition"), h.get("tl-origin-offset"), where[1], where[2]))
    if reason == "failed" and retries is not None and h.get("tl-attempt") != str(retries + 1):
        bad.append("tl-attempt=%r, want %d" % (h.get("tl-attempt"), retries + 1))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input")
    ap.add_argument("--generate")
    ap.add_argument("--record", action="append", default=[])
    ap.add_argument("--stalled", action="append", default=[])
    ap.add_argument("--dlq", action="append", default=[])
    ap.add_argument("--retries", type=int)
    ap.add_argument("--origin")
    ap.add_argument("--max-dup", type=int, default=0)
    ap.add_argument("--label", default="verify")
    a = ap.parse_args()
    if bool(a.input) == bool(a.generate):
        ap.error("give exactly one of --input and --generate")

    expected = read_input(a.input) if a.input else generate(a.generate)
    records = read_records(a.record)
    stalled = read_reroutes(a.stalled)
    dlq = read_reroutes(a.dlq)

    seen = Counter(records)
    problems = []
    plain_stalled = 0
    for kind, rows, reason in (("stall", stalled, "stalled"), ("dlq", dlq, "failed")):
        for i, h, payload in rows:
            if i is None:
                problems.append("%s target: a message without an id: %r" % (kind, payload[:60]))
                continue
            seen[i] += 1
            where = expected.get(i)
            if where is None:
                continue
            want = "stall" if kind == "stall" else "fail"
            if where[0] != want:
                if kind == "stall" and where[0] in ("plain", "fail"):
                    plain_stalled += 1
                else:
                    problems.append("%s (marked %s) is on the %s target" % (i, where[0], kind))
            bad = check_headers(h, reason, a.origin, where, a.retries)
            if bad:
                problems.append("%s on the %s target: %s" % (i, kind, "; ".join(bad)))
    for i in records:
        where = expected.get(i)
        if where and where[0] != "plain":
            problems.append("%s (marked %s) was completed" % (i, where[0]))

    unexpected = sorted(i for i in seen if i not in expected)
    lost = sorted(i for i in expected if seen[i] == 0)
    # A plain message that stalled on a starved machine, was rerouted, and whose handler
    # still finished its work after the reroute (the stall split does not take back what a
    # late handler did) is one delivery seen twice, not a redelivery: counted apart.
    stalled_ids = Counter(i for i, _, _ in stalled)
    late = sorted(i for i in stalled_ids if records.get(i) == 1 and stalled_ids[i] == 1
                  and expected.get(i, ("",))[0] == "plain")
    duplicates = sum(c - 1 for c in seen.values() if c > 1) - len(late)
    marked = Counter(w[0] for w in expected.values())
    print("%s: produced=%d (stall %d, fail %d) completed=%d rerouted=%d (stalled %d, dlq %d, "
          "plain-but-stalled %d, of them completed late %d) duplicates=%d (max %d) "
          "unexpected=%d lost=%d" % (
              a.label, len(expected), marked["stall"], marked["fail"], sum(records.values()),
              len(stalled) + len(dlq), len(stalled), len(dlq), plain_stalled, len(late),
              duplicates, a.max_dup, len(unexpected), len(lost)))
    ok = True
    if lost:
        print("%s: FAIL: %d ids lost, e.g. %s" % (a.label, len(lost), " ".join(lost[:10])))
        ok = False
    if unexpected:
        print("%s: FAIL: %d ids never produced, e.g. %s" % (a.label, len(unexpected),
                                                          " ".join(unexpected[:10])))
        ok = False
    if duplicates > a.max_dup:
        dup = [i for i, c in seen.items() if c > 1][:10]
        print("%s: FAIL: %d duplicates, more than %d, e.g. %s" % (a.label, duplicates, a.max_dup,
                                                                " ".join(dup)))
        ok = False
    if problems:
        print("%s: FAIL: %d misplaced or malformed reroutes, e.g.:" % (a.label, len(problems)))
        for p in problems[:10]:
            print("  " + p)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
