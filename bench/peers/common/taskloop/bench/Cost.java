package taskloop.bench;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;

/**
 * What handling one message costs, as bench/peers.sh names it: `noop`, `sleep_ms=N`
 * (the thread sleeps N ms) or `spin_us=N` (the thread burns N µs of its own CPU time,
 * read from its CPU clock so that being preempted does not count as work, as taskloop's
 * `work` handler does with spin_us).
 */
final class Cost {
  private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();
  private final long sleepMs;
  private final long spinNs;

  private Cost(long sleepMs, long spinNs) {
    this.sleepMs = sleepMs;
    this.spinNs = spinNs;
  }

  static Cost parse(String s) {
    if (s.equals("noop")) return new Cost(0, 0);
    if (s.startsWith("sleep_ms=")) return new Cost(Long.parseLong(s.substring(9)), 0);
    if (s.startsWith("spin_us=")) return new Cost(0, Long.parseLong(s.substring(8)) * 1000);
    throw new IllegalArgumentException("cost: noop, sleep_ms=N or spin_us=N, not " + s);
  }

  void run() {
    if (sleepMs > 0) {
      try {
        Thread.sleep(sleepMs);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    if (spinNs > 0) {
      long end = THREADS.getCurrentThreadCpuTime() + spinNs;
      while (THREADS.getCurrentThreadCpuTime() < end) {
        Thread.onSpinWait();
      }
    }
  }
}
