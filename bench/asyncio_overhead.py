#!/usr/bin/env python3
"""The asyncio side of bench/task_overhead.c: what one task costs from create_task to
its result collected (gather, wait), and the memory one pending future holds.

Prints a table and "RESULT <mode> <n> <ns_per_task>" lines for bench/run.sh.
Usage: asyncio_overhead.py [max_n]   (default 200000)
"""
import asyncio
import gc
import resource
import sys
import time


async def trivial(i):
    return i


async def one_round(n, collect):
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter_ns()
    tasks = [loop.create_task(trivial(i)) for i in range(n)]
    if collect == "gather":
        await asyncio.gather(*tasks)
    else:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)
        assert len(done) == n and not pending
    del tasks
    t1 = time.perf_counter_ns()
    return (t1 - t0) / n


def measure(n, collect):
    rounds = 2 if n >= 100000 else 5
    best = None
    for _ in range(rounds):
        gc.collect()
        ns = asyncio.run(one_round(n, collect))
        best = ns if best is None or ns < best else best
    return best


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def pending_memory(n):
    loop = asyncio.get_running_loop()
    gc.collect()
    before = peak_rss_bytes()
    futures = [loop.create_future() for _ in range(n)]
    after = peak_rss_bytes()
    for f in futures:
        f.cancel()
    return (after - before) / n


def main():
    max_n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    per_future = asyncio.run(pending_memory(max_n))
    print(f"pending futures: {max_n}, {per_future:.0f} bytes per pending future (peak RSS)")
    print(f"RESULT pending_bytes {max_n} {per_future:.0f}")
    print(f"\n{'n':<10} {'asyncio_wait':>14} {'asyncio_gather':>14}   (ns per task)")
    sizes = [n for n in (1000, 10000, 100000, 200000) if n <= max_n]
    for n in sizes:
        wait_ns = measure(n, "wait")
        gather_ns = measure(n, "gather")
        print(f"{n:<10} {wait_ns:>14.0f} {gather_ns:>14.0f}")
        print(f"RESULT asyncio_wait {n} {wait_ns:.1f}")
        print(f"RESULT asyncio_gather {n} {gather_ns:.1f}")


if __name__ == "__main__":
    main()
