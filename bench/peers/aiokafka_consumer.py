"""The asyncio peer of bench/peers.sh: what a Python user writes for the asyncio tasks
tutorial's queue scenario. aiokafka fetches; every message becomes a task; asyncio.wait
with a timeout splits the done tasks from the pending ones, and no more than CONCURRENCY
are pending at once. Ordering key or partition chains the tasks of one key (or partition)
through an asyncio.Lock, which wakes its waiters first come first served; unordered runs
them as they come. Each message costs noop, sleep_ms=N (asyncio.sleep) or spin_us=N (N µs
of this thread's CPU time: the loop is blocked meanwhile, as CPU work in a coroutine is).

Prints `RESULT peer aiokafka ORDERING COST msgs_per_s N`, timed from the first message
handled to the last, as bench/catchup.sh times taskloop.
Usage: aiokafka_consumer.py BROKERS TOPIC GROUP EXPECTED COST CONCURRENCY ORDERING
"""

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer


def parse_cost(text):
    """Returns (sleep seconds, spin nanoseconds) for noop, sleep_ms=N or spin_us=N."""
    if text == "noop":
        return 0.0, 0
    if text.startswith("sleep_ms="):
        return int(text[9:]) / 1000.0, 0
    if text.startswith("spin_us="):
        return 0.0, int(text[8:]) * 1000
    raise SystemExit(f"aiokafka_consumer.py: cost: noop, sleep_ms=N or spin_us=N, not {text}")


async def consume(brokers, topic, group, expected, cost, concurrency, ordering):
    sleep_s, spin_ns = parse_cost(cost)
    locks = {}
    clock = {"first": None, "last": None, "handled": 0}

    async def handle(lock):
        if clock["first"] is None:
            clock["first"] = time.perf_counter()
        if lock is not None:
            await lock.acquire()
        try:
            if sleep_s:
                await asyncio.sleep(sleep_s)
            if spin_ns:
                end = time.thread_time_ns() + spin_ns
                while time.thread_time_ns() < end:
                    pass
        finally:
            if lock is not None:
                lock.release()
        clock["handled"] += 1
        if clock["handled"] == expected:
            clock["last"] = time.perf_counter()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, group_id=group,
                                auto_offset_reset="earliest")
    await consumer.start()
    pending = set()
    try:
        while clock["handled"] < expected:
            room = concurrency - len(pending)
            if room > 0:
                batches = await consumer.getmany(timeout_ms=100 if not pending else 0,
                                                 max_records=room)
                for tp, records in batches.items():
                    for r in records:
                        lock = None
                        if ordering != "unordered":
                            k = tp.partition if ordering == "partition" else r.key
                            lock = locks.setdefault(k, asyncio.Lock())
                        pending.add(asyncio.create_task(handle(lock)))
            if pending:
                done, pending = await asyncio.wait(pending, timeout=1.0,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()
    finally:
        await consumer.stop()
    return expected / (clock["last"] - clock["first"])


def main():
    if len(sys.argv) != 8:
        raise SystemExit(__doc__.split("Usage: ")[1])
    brokers, topic, group, expected, cost, concurrency, ordering = sys.argv[1:]
    if ordering not in ("key", "partition", "unordered"):
        raise SystemExit(f"aiokafka_consumer.py: ordering: key, partition or unordered, not {ordering}")
    rate = asyncio.run(consume(brokers, topic, group, int(expected), cost, int(concurrency),
                               ordering))
    print(f"RESULT peer aiokafka {ordering} {cost} msgs_per_s {rate:.0f}")


if __name__ == "__main__":
    main()
