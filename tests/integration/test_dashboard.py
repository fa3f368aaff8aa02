"""The admin dashboard in a real browser (headless Chromium through Selenium).

Runs `taskloop run` on tests/integration/configs/dashboard.yaml (ZeroMQ in, the `work`
handler, an admin token), sends it load with `taskloop produce`, opens the page, gives
it the token, and checks that the figures it shows are those of /stats and /metrics,
that a stalled message shows in the tasks table and leaves it once rerouted and its
stuck attempt ended, and that the page says so when the service stops answering.
Saves a screenshot as dashboard.png in the working directory (the build dir).

Usage: test_dashboard.py TASKLOOP CONFIG. Exits 77 (skipped) when Chromium, its driver
or Selenium is not installed (scripts/install-deps.sh installs them when it can).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

SKIP = 77
TOKEN = "dash-Tk.9_test"


def skip(why):
    print("SKIP: %s (scripts/install-deps.sh installs chromium, chromium-driver "
          "and python3-selenium)" % why)
    sys.exit(SKIP)


try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
except ImportError:
    skip("python3-selenium is not installed")
CHROME = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
if not CHROME or not DRIVER:
    skip("chromium or chromedriver is not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(what, check, timeout=20.0):
    """Polls check() until it returns a true value, which it returns."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # the page or the service is between states
            last = e
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class Service:
    def __init__(self, taskloop, config):
        self.taskloop = taskloop
        self.port = free_port()
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        env = dict(os.environ, DASH_ENDPOINT=self.endpoint, DASH_ADMIN_PORT=str(self.port),
                   DASH_TOKEN=TOKEN, DASH_STALL_MS="4000")
        self.err = open("dashboard-service.err", "w")
        self.proc = subprocess.Popen([taskloop, "run", config, "--no-progress"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        self.url = "http://127.0.0.1:%d" % self.port
        try:
            until("the admin endpoint", lambda: self.get("/healthz", auth=False) == "ok\n")
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def get(self, path, auth=True):
        req = urllib.request.Request(self.url + path)
        if auth:
            req.add_header("Authorization", "Bearer " + TOKEN)
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()

    def stats(self):
        return json.loads(self.get("/stats"))

    def metrics(self):
        out = {}
        for line in self.get("/metrics").splitlines():
            m = re.match(r"^(taskloop_\w+)(\{[^}]*\})? (\S+)$", line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out

    def produce(self, n, first_id, stall_ratio=0.0, rate=0, wait=True):
        args = [self.taskloop, "produce", "--to", "zmq:" + self.endpoint, "-n", str(n),
                "--first-id", str(first_id), "--stall-ratio", str(stall_ratio), "--keys", "8"]
        if rate:
            args += ["--rate", str(rate)]
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        if wait:
            assert p.wait() == 0, "taskloop produce failed"
        return p

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.send_signal(signal.SIGINT)  # twice: at once, no drain
            self.proc.wait(timeout=20)


# Both read the page in one script: the page redraws on every poll, and an element
# found in one call can be replaced before the next one reads it (a stale reference).
def text(browser, element_id):
    return browser.execute_script(
        "const e = document.getElementById(arguments[0]);"
        "if (!e) throw new Error('no element ' + arguments[0]);"
        "return e.innerText.trim();", element_id)


def cells_of(browser, row_selector):
    """The texts of the cells of the first row the selector finds."""
    return browser.execute_script(
        "const r = document.querySelector(arguments[0]);"
        "if (!r) throw new Error('no row ' + arguments[0]);"
        "return Array.from(r.querySelectorAll('td'), td => td.innerText.trim());", row_selector)


def task_rows(browser):
    """The tasks table: (offset, stalled) per row."""
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#tasks tbody tr'), r =>"
        " [r.getAttribute('data-offset'), r.querySelectorAll('td')[8].innerText.trim()]);")
    return [(int(offset), stalled) for offset, stalled in rows]


def main():
    taskloop, config = sys.argv[1], sys.argv[2]
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROME
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,2000"):
        opts.add_argument(a)
    svc = Service(taskloop, config)
    try:
        browser = webdriver.Chrome(service=ChromeService(executable_path=DRIVER), options=opts)
        try:
            run(svc, browser)
        finally:
            browser.quit()
    finally:
        svc.stop()
    print("ok - the dashboard: all checks passed")


def run(svc, browser):
    browser.get(svc.url + "/")
    # The token: the page asks for it, then sends it with every poll.
    until("the token form", lambda: browser.find_element(By.ID, "login").is_displayed())
    assert "token" in text(browser, "banner"), text(browser, "banner")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    until("the first figures", lambda: text(browser, "c-consumed_total") == "0")
    assert not browser.find_element(By.ID, "banner").is_displayed()
    print("ok - the page asks for the token and polls with it")

    svc.produce(300, 0)
    until("300 consumed on the page", lambda: text(browser, "c-consumed_total") == "300")
    until("all settled", lambda: text(browser, "c-in_flight") == "0")
    time.sleep(2)  # one more poll: the page and the endpoint now hold still
    stats, metrics = svc.stats(), svc.metrics()
    for name in ("consumed_total", "completed_total", "failed_total", "stalled_total"):
        shown = int(text(browser, "c-" + name))
        assert shown == stats["counters"][name] == metrics["taskloop_" + name], (name, shown)
    assert int(text(browser, "c-workers")) == stats["gauges"]["workers"] == \
        metrics["taskloop_workers"]
    assert int(text(browser, "q-count")) == stats["handler_duration_seconds"]["count"] == \
        metrics["taskloop_handler_duration_seconds_count"] == 300
    p50 = float(text(browser, "q-p50"))
    assert abs(p50 - stats["handler_duration_seconds"]["p50"] * 1000) < 0.01, p50
    part = stats["partitions"]["items"][0]
    cells = cells_of(browser, "#partitions tbody tr")
    key = 'taskloop_committed_offset{source="in",topic="%s",partition="-1"}' % svc.endpoint
    assert int(cells[3]) == part["committed_offset"] == metrics[key] == 300, (cells, part)
    assert text(browser, "r0-in_flight") == "0" and text(browser, "r0-stalled_total") == "0"
    assert text(browser, "r0-emitting") == "0" and text(browser, "r0-waiting_due") == "0"
    assert text(browser, "r0-breaker") == "none"  # the route has no circuit breaker
    assert text(browser, "r0-rate") == "none"  # nor a rate limit
    print("ok - counters, handler times and the committed offset match /stats and /metrics")

    # A steady load for the charts, and one stalled message in it: shown while it runs,
    # marked stalled at the 1s timeout and rerouted, gone once its stuck attempt ends (4s).
    load = svc.produce(1000, 2000, rate=100, wait=False)
    time.sleep(6)
    svc.produce(1, 1000, stall_ratio=1.0)
    stalled = until("a stalled task in the table",
                    lambda: [o for o, st in task_rows(browser) if st == "yes"], 10)
    until("the route's stall counted", lambda: text(browser, "r0-stalled_total") == "1")
    until("its reroute counted", lambda: text(browser, "r0-rerouted_total") == "1")
    assert cells_of(browser, '#targets tr[data-target="memory:stalled"]')[1] == "1"
    assert svc.stats()["routes"][0]["rerouted_total"] == 1
    browser.save_screenshot("dashboard.png")
    until("it gone from the tasks table",
          lambda: stalled[0] not in [o for o, _ in task_rows(browser)], 15)
    assert load.wait(timeout=30) == 0, "taskloop produce failed"
    until("every message on the page",
          lambda: text(browser, "c-consumed_total") == "1301" and
          int(text(browser, "c-completed_total")) == svc.stats()["counters"]["completed_total"])
    print("ok - a stalled task shows, is marked stalled and rerouted, then leaves the table")

    svc.stop()
    until("the banner", lambda: browser.find_element(By.ID, "banner").is_displayed() and
          "not answering" in text(browser, "banner"), 10)
    print("ok - the page says when the service stops answering")


if __name__ == "__main__":
    main()
