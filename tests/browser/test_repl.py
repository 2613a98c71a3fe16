"""The REPL page (web/) in headless Chromium, against a real cluster: Redis,
workers (the sanitizer build under `make test`) and the lb serving the page
with --static.

What a user does is done through the page: typing, clicking, the stdin line,
the runtime picker. Workers are killed and drained under it, and the page must
find another one by itself. Screenshots of a run and of the reconnecting
state go to WSLB_SCREENSHOT_DIR (or the test's temp dir).
"""

import os
import signal
import threading
import time

import pytest

import util
from conftest import browser_missing

pytestmark = pytest.mark.skipif(browser_missing() is not None,
                                reason=browser_missing() or "browser available")

# Workers wait this long for runs to finish when told to drain: long enough
# for the run a test keeps going during a drain.
DRAIN_S = 10


class Page:
    """The REPL page in one browser, read through its DOM."""

    def __init__(self, driver, url):
        from selenium.webdriver.common.by import By
        self.d = driver
        self.By = By
        self.url = url
        driver.get(url)

    def el(self, elem_id):
        return self.d.find_element(self.By.ID, elem_id)

    def attr(self, elem_id, name):
        return self.el(elem_id).get_attribute(name)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    # -- state
    def conn_state(self):
        return self.attr("conn", "data-state")

    def conn_text(self):
        return self.js("return document.getElementById('conn-text').textContent")

    def worker(self):
        return self.attr("worker", "data-worker")

    def verdict(self):
        return self.attr("verdict", "data-verdict")

    def verdict_text(self):
        return self.js("return document.getElementById('verdict').textContent")

    def output(self):
        return self.js("return document.getElementById('output').textContent")

    def code(self):
        return self.js("return document.getElementById('code').value")

    # -- waiting
    def wait_connected(self, not_worker=None, timeout=20):
        def ok():
            w = self.worker()
            return self.conn_state() == "open" and w and w != not_worker and w
        return util.wait_for(ok, timeout, "the page to be connected (to a worker other than %r); "
                             "status %r" % (not_worker, self.conn_text()))

    def wait_verdict(self, timeout=30):
        def done():
            v = self.verdict()
            return v not in ("", "running", "waiting") and v
        return util.wait_for(done, timeout, "a verdict (now %r: %r; output %r)"
                             % (self.verdict(), self.verdict_text(), self.output()[-300:]))

    def wait_output(self, text, timeout=20):
        util.wait_for(lambda: text in self.output(), timeout,
                      "%r in the output (output: %r, verdict %r)"
                      % (text, self.output()[-300:], self.verdict_text()))

    # -- acting
    def set_code(self, code):
        """Puts code in the editor as a paste does: one input event."""
        self.js("const t = document.getElementById('code'); t.focus(); t.value = arguments[0];"
                "t.dispatchEvent(new Event('input', {bubbles: true}));", code)

    def type_code(self, keys):
        """Types into the editor with real key events (after clearing it)."""
        self.set_code("")
        self.el("code").send_keys(keys)

    def run(self):
        self.el("run").click()

    def run_and_wait(self, code, timeout=30):
        self.set_code(code)
        self.run()
        return self.wait_verdict(timeout)

    def stdin_line(self, line):
        from selenium.webdriver.common.keys import Keys
        box = self.el("stdin")
        util.wait_for(box.is_enabled, 10, "the stdin box to be enabled")
        box.send_keys(line + Keys.ENTER)

    def pick_runtime(self, name):
        from selenium.webdriver.support.ui import Select
        Select(self.el("runtime")).select_by_value(name)

    def screenshot(self, path):
        assert self.d.save_screenshot(path), "screenshot %s failed" % path
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", "%s is not a PNG" % path

    def console_problems(self):
        """Console lines that mean the page is broken: script errors and CSP
        violations. Failed websocket handshakes while no worker is usable
        (the lb answers 503) are the expected noise of an outage."""
        bad = []
        for e in self.d.get_log("browser"):
            msg = e.get("message", "")
            if "Content Security Policy" in msg or "Refused to" in msg:
                bad.append(msg)
            elif e.get("level") == "SEVERE" and "WebSocket connection to" not in msg:
                bad.append(msg)
        return bad


def page_for(browser, cluster):
    p = Page(browser, cluster.url)
    p.wait_connected()
    return p


def test_session_survives_killed_and_drained_workers(cluster_factory, browser, shot_dir):
    c = cluster_factory(3, worker_flags={"drain_s": DRAIN_S})
    p = page_for(browser, c)
    assert p.js("return document.getElementById('runtime').disabled") is False

    # print(6*7), typed with real keys and run with Ctrl+Enter.
    from selenium.webdriver.common.keys import Keys
    p.type_code("print(6*7)")
    p.el("code").send_keys(Keys.CONTROL, Keys.ENTER)
    assert p.wait_verdict() == "ok", p.verdict_text()
    assert p.output() == "42\n"
    assert "wall" in p.verdict_text() and "CPU" in p.verdict_text() \
        and "memory" in p.verdict_text()

    # A program that reads two lines typed into the stdin box.
    p.set_code('a = input("first? ")\nb = input("second? ")\nprint("sum", int(a) + int(b))\n')
    p.run()
    p.wait_output("first? ")
    p.stdin_line("2")
    p.wait_output("second? ")
    p.stdin_line("40")
    assert p.wait_verdict() == "ok", p.verdict_text()
    assert p.output().endswith("sum 42\n"), p.output()
    assert p.js("return [...document.querySelectorAll('#output .o-stdin')]"
                ".map(e => e.textContent).join('')") == "2\n40\n"
    p.screenshot(os.path.join(shot_dir, "repl.png"))

    # An endless loop, stopped with the Stop button.
    p.set_code("while True:\n    pass\n")
    p.run()
    util.wait_for(lambda: p.verdict() == "running", 10, "the loop to be running")
    p.el("stop").click()
    assert p.wait_verdict() == "killed", p.verdict_text()

    # A C compile error: the compiler's message and the build verdict. The
    # Python code stays stored under its own runtime.
    python_code = p.code()
    p.pick_runtime("c")
    p.run_and_wait("int main(void) { return undeclared_thing; }\n")
    assert p.verdict() == "error" and "build failed" in p.verdict_text(), p.verdict_text()
    assert "undeclared_thing" in p.output() and "error" in p.output(), p.output()
    p.pick_runtime("python3")
    assert p.code() == python_code

    # SIGKILL the worker serving the page: the lb closes the socket with 1014,
    # the page reconnects to another worker, and the code is still there.
    code = 'print("still here")\n'
    p.set_code(code)
    first = p.worker()
    c.workers[first].proc.kill()
    second = p.wait_connected(not_worker=first)
    assert "1014" in p.conn_text() and first in p.conn_text(), p.conn_text()
    assert p.code() == code
    p.run()
    assert p.wait_verdict() == "ok" and p.output() == "still here\n", p.verdict_text()

    # Drain the new worker: the lb's admin API stops new connections to it,
    # and its own drain (SIGTERM, as a deploy does) closes the page's
    # websocket with 1001. The page goes to the third worker at once.
    status, _, body = c.lb.post("/backends/%s/drain" % second)
    assert status == 200, body
    c.wait_backend(second, "draining")
    c.workers[second].stop(signal.SIGTERM)
    third = p.wait_connected(not_worker=second)
    assert third != first
    assert "1001" in p.conn_text() and "worker draining" in p.conn_text(), p.conn_text()
    assert c.workers[second].wait(DRAIN_S + 5) == 0

    # A run answered "draining" before it started is sent again after
    # reconnecting. The third worker keeps a run of someone else going while
    # it drains, so it keeps the page's socket open and answers the page's
    # run with an error; with no other worker left, the page waits, backing
    # off, until a new worker joins.
    w3 = c.workers[third]
    other = {}

    def someone_else():
        try:
            other["r"] = util.run_eval(w3.url(), "python3", "import time\ntime.sleep(4)\n",
                                       deadline=DRAIN_S + 10)
        except Exception as e:  # reported below
            other["e"] = e
    t = threading.Thread(target=someone_else, daemon=True)
    t.start()
    util.wait_for(lambda: util.metric_sum(util.get_metrics(w3.addr),
                                          "worker_evaluations_running") == 1,
                  10, "the other client's run to start on %s" % third)
    w3.stop(signal.SIGTERM)
    util.wait_for(lambda: util.http_get(w3.addr, "/healthz")[0] == 503, 10,
                  "%s to be draining" % third)
    p.set_code('print("sent again")\n')
    p.run()
    util.wait_for(lambda: p.conn_state() == "waiting" and "attempt" in p.conn_text(), 20,
                  "the page to back off (status %r)" % p.conn_text())
    assert p.verdict() == "waiting", p.verdict_text()
    assert "draining" in p.conn_text(), p.conn_text()
    assert p.js("return document.getElementById('reconnect-now').hidden") is False
    p.screenshot(os.path.join(shot_dir, "repl-reconnect.png"))

    fourth = c.add_worker()
    c.wait_backend(fourth.id, "up")
    assert p.wait_connected(not_worker=third, timeout=30) == fourth.id
    assert p.wait_verdict() == "ok", p.verdict_text()
    assert p.output().endswith("sent again\n"), p.output()
    assert "sent again to %s after reconnecting" % fourth.id in p.output(), p.output()

    t.join(DRAIN_S + 15)
    assert "r" in other and other["r"].verdict == "ok", other
    assert w3.wait(DRAIN_S + 5) == 0
    assert p.console_problems() == []


def test_large_paste_and_output_stay_responsive(cluster_factory, browser):
    c = cluster_factory(1)
    p = page_for(browser, c)
    # 200 KB of code that prints as it goes, then a stream of more output,
    # in flushes a few milliseconds apart: more than the view keeps.
    lines = ['print("pasted line %05d %s")' % (i, "x" * 30) for i in range(4600)]
    tail = ("import sys, time\n"
            "for i in range(16000):\n"
            "    print('streamed', i, 'y' * 24)\n"
            "    if i % 400 == 0:\n"
            "        sys.stdout.flush()\n"
            "        time.sleep(0.02)\n"
            "print('the end')\n")
    code = "\n".join(lines) + "\n" + tail
    assert len(code) >= 200 * 1024
    started = time.monotonic()
    p.set_code(code)
    assert time.monotonic() - started < 5, "pasting 200 KB took %.1f s" % (
        time.monotonic() - started)
    # Frame gaps, measured by the page itself while the output streams.
    p.js("window.__gaps = []; let last = performance.now();"
         "const tick = (t) => { window.__gaps.push(t - last); last = t;"
         "  if (window.__gaps.length < 100000) requestAnimationFrame(tick); };"
         "requestAnimationFrame(tick);")
    p.run()
    # Round trips into the page while it streams: each must come back fast.
    trips = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        v = p.js("return document.getElementById('verdict').dataset.verdict")
        trips.append(time.monotonic() - t0)
        if v not in ("", "running", "waiting"):
            break
    assert p.verdict() == "ok", p.verdict_text()
    assert len(trips) >= 5, trips
    assert max(trips) < 1.0, "slowest round trip into the page: %.2f s" % max(trips)
    gaps = p.js("return window.__gaps")
    print("streaming: %d frames, longest gap %.0f ms; %d round trips, slowest %.3f s"
          % (len(gaps), max(gaps), len(trips), max(trips)))
    assert max(gaps) < 500, "longest frame gap while streaming: %.0f ms" % max(gaps)

    text = p.output()
    assert text.endswith("the end\n"), text[-200:]
    assert len(text) <= 200000 + 8192, len(text)
    note = p.js("const n = document.getElementById('truncated'); "
                "return n.hidden ? '' : n.textContent")
    assert "Output truncated in view" in note, note
    assert len(p.code()) == len(code)
    # The paste is stored: a reload brings it back.
    p.js("document.getElementById('code').blur()")
    browser.refresh()
    p.wait_connected()
    assert len(p.code()) == len(code)
    assert p.console_problems() == []


def test_busy_run_is_sent_again(cluster_factory, browser):
    # One slot, no queue: while someone else runs, the page's run is answered
    # "busy"; the page backs off, reconnects and sends it again.
    c = cluster_factory(1, worker_flags={"max_evals": 1, "queue": 0})
    p = page_for(browser, c)
    w = next(iter(c.workers.values()))
    other = {}

    def someone_else():
        try:
            other["r"] = util.run_eval(w.url(), "python3", "import time\ntime.sleep(2)\n")
        except Exception as e:  # reported below
            other["e"] = e
    t = threading.Thread(target=someone_else, daemon=True)
    t.start()
    util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr),
                                          "worker_evaluations_running") == 1,
                  10, "the other client's run to start")
    p.set_code('print("my turn")\n')
    p.run()
    util.wait_for(lambda: "busy" in p.conn_text() or "busy" in p.verdict_text(), 10,
                  "the page to say the worker is busy (%r, %r)"
                  % (p.conn_text(), p.verdict_text()))
    assert p.wait_verdict(30) == "ok", p.verdict_text()
    assert p.output().endswith("my turn\n"), p.output()
    assert "sent again to %s" % w.id in p.output(), p.output()
    t.join(20)
    assert "r" in other and other["r"].verdict == "ok", other
    assert p.console_problems() == []


def test_keyboard_layout_and_policy(cluster_factory, browser):
    from selenium.webdriver.common.keys import Keys
    c = cluster_factory(1)
    p = page_for(browser, c)

    # Every control has a label.
    unlabelled = p.js("return [...document.querySelectorAll('input, select, textarea, button')]"
                      ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
                      " && !e.textContent.trim()).map(e => e.id)")
    assert unlabelled == []
    # Tab indents, Shift+Tab dedents, Enter keeps the indentation.
    p.set_code("")
    box = p.el("code")
    box.send_keys("for i in range(2):" + Keys.ENTER + "print(i)")
    assert p.code() == "for i in range(2):\n    print(i)"
    box.send_keys(Keys.HOME + Keys.TAB)
    assert p.code() == "for i in range(2):\n        print(i)"
    box.send_keys(Keys.SHIFT + Keys.TAB)
    assert p.code() == "for i in range(2):\n    print(i)"
    # Esc then Tab leaves the editor (keyboard users are not trapped).
    box.send_keys(Keys.ESCAPE + Keys.TAB)
    assert p.js("return document.activeElement.id") != "code"
    assert p.code() == "for i in range(2):\n    print(i)"
    # Ctrl+Enter from anywhere runs.
    p.el("clear").send_keys(Keys.CONTROL, Keys.ENTER)
    assert p.wait_verdict() == "ok" and p.output() == "0\n1\n", p.verdict_text()
    # Close stdin: a program reading to EOF ends.
    p.set_code("import sys\nprint(len(sys.stdin.read().split()))\n")
    p.run()
    p.stdin_line("a b c")
    p.el("stdin-close").click()
    assert p.wait_verdict() == "ok" and p.output().endswith("3\n"), p.output()

    # A phone-sized window: nothing is wider than the screen, and Run is on it.
    browser.set_window_size(390, 844)
    util.wait_for(lambda: p.js("return innerWidth") <= 400, 5, "the window to shrink")
    assert p.js("return document.documentElement.scrollWidth <= innerWidth")
    run_box = p.js("const r = document.getElementById('run').getBoundingClientRect();"
                   "return [r.left, r.right, r.height]")
    assert run_box[0] >= 0 and run_box[1] <= 390 and run_box[2] >= 40, run_box
    browser.set_window_size(1280, 800)

    # The Content-Security-Policy is enforced: the page's own websocket is
    # allowed ('self' covers ws: to the same host and port), an inline script
    # and a websocket to any other origin are not.
    p.js("window.__violations = [];"
         "document.addEventListener('securitypolicyviolation',"
         "  (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
         "const s = document.createElement('script'); s.textContent = 'window.__inline = 1';"
         "document.body.appendChild(s);"
         "try { new WebSocket('ws://127.0.0.2:9/eval'); } catch (e) {"
         "  window.__violations.push('threw ' + e.name); }")
    util.wait_for(lambda: len(p.js("return window.__violations")) >= 2, 5,
                  "two CSP violations (got %r)" % p.js("return window.__violations"))
    v = p.js("return window.__violations")
    assert p.js("return window.__inline === undefined")
    assert any(x.startswith("script-src") for x in v), v
    assert any("connect-src" in x or x.startswith("threw") for x in v), v
    assert p.conn_state() == "open"
