"""Fixtures for the browser tests: the integration suite's Redis, worker and
lb fixtures, a cluster made of them, and headless Chromium.

The integration fixtures are loaded from tests/integration under a module
name of their own (both directories have a conftest.py, and pytest gives each
the name "conftest" in turn); lbutil, which imports a few names from
"conftest", finds them re-exported here.
"""

import importlib.util
import os
import shutil
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "..", "integration")
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
WEB_DIR = os.path.join(REPO, "web")
sys.path.insert(0, INTEGRATION)


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_itg = _load("wslb_integration_conftest", os.path.join(INTEGRATION, "conftest.py"))
SANITIZER_MARKS = _itg.SANITIZER_MARKS
_failed = _itg._failed
binary = _itg.binary
sanitizer_env = _itg.sanitizer_env
redis_server = _itg.redis_server
worker_factory = _itg.worker_factory
pytest_runtest_makereport = _itg.pytest_runtest_makereport
_no_tmp_leftovers = _itg._no_tmp_leftovers

import util  # noqa: E402
from lbutil import lb_factory  # noqa: E402,F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def browser_missing():
    """Why the browser tests cannot run here, or None."""
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return "%s is not installed (Debian package %s; make deps installs it)" % (path, pkg)
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "python3-selenium is not installed (make deps installs it)"
    return None


class Cluster:
    """A private Redis, workers publishing to it, and one lb serving web/."""

    def __init__(self, redis_addr, start_worker, start_lb, tmpdir, nworkers, worker_flags,
                 lb_flags):
        self.redis = redis_addr
        self._start_worker = start_worker
        self.tmpdir = tmpdir
        self.worker_flags = worker_flags
        self.workers = {}
        for _ in range(nworkers):
            self.add_worker()
        flags = dict(static=WEB_DIR, redis=redis_addr, health_interval_ms=200)
        flags.update(lb_flags)
        self.lb = start_lb(**flags)
        for w in self.workers.values():
            self.wait_backend(w.id, "up")
        self.url = "http://%s/" % self.lb.addr

    def add_worker(self):
        """Starts one more worker, with a work root of its own (workers clean
        up roots they believe stale, which another test's worker could be)."""
        wid = "bw%d" % (len(self.workers) + 1)
        root = os.path.join(self.tmpdir, "root-" + wid)
        os.makedirs(root)
        flags = dict(id=wid, redis=self.redis, work_root=root)
        flags.update(self.worker_flags)
        w = self._start_worker(**flags)
        self.workers[wid] = w
        return w

    def wait_backend(self, wid, state, timeout=15):
        def seen():
            b = self.lb.backend(wid)
            return b is not None and b["state"] == state
        util.wait_for(seen, timeout, "lb to list backend %s as %s" % (wid, state))


@pytest.fixture
def cluster_factory(redis_server, worker_factory, lb_factory):
    """make(nworkers=3, worker_flags={}, lb_flags={}) -> Cluster. Everything
    is stopped by the underlying fixtures."""
    tmpdir = tempfile.mkdtemp(prefix="wslb-browser-")

    def make(nworkers=3, worker_flags=None, lb_flags=None):
        return Cluster(redis_server, worker_factory, lb_factory, tmpdir, nworkers,
                       worker_flags or {}, lb_flags or {})
    try:
        yield make
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture
def browser():
    """Headless Chromium through chromedriver, with a fresh profile in a temp
    dir that is removed afterwards, and the page's console log kept."""
    why = browser_missing()
    if why:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="wslb-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--user-data-dir=" + profile,
                "--window-size=1280,800"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        driver.set_script_timeout(30)
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def shot_dir(tmp_path):
    """Where screenshots go: WSLB_SCREENSHOT_DIR, or the test's temp dir."""
    d = os.environ.get("WSLB_SCREENSHOT_DIR") or str(tmp_path)
    os.makedirs(d, exist_ok=True)
    return d
