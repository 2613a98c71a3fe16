"""The lb's --static files over real sockets: what it serves from memory,
what it refuses, what it leaves to the workers, SIGHUP reloads, start-up
caps and the metrics."""

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

import util
from conftest import binary
from lbutil import lb_factory, open_ws  # noqa: F401

INDEX = b"<!doctype html><title>static</title>\n"


@pytest.fixture
def webdir():
    """A static dir with a page, a subdirectory, and links to a secret next
    to it; removed afterwards."""
    root = tempfile.mkdtemp(prefix="wslb-static-")
    web = os.path.join(root, "web")
    os.makedirs(os.path.join(web, "sub"))
    with open(os.path.join(root, "secret.txt"), "w") as f:
        f.write("SECRET\n")
    with open(os.path.join(web, "index.html"), "wb") as f:
        f.write(INDEX)
    with open(os.path.join(web, "app.js"), "w") as f:
        f.write("console.log(1);\n")
    with open(os.path.join(web, "sub", "index.html"), "w") as f:
        f.write("sub\n")
    os.symlink(os.path.join(root, "secret.txt"), os.path.join(web, "secret.txt"))
    os.symlink("..", os.path.join(web, "sub", "up"))
    try:
        yield web
    finally:
        shutil.rmtree(root, ignore_errors=True)


def raw(addr, line, headers=""):
    return util.raw_http(addr, ("%s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (line, headers)).encode())


def test_serves_page_and_leaves_the_rest_to_workers(worker_factory, lb_factory, webdir):
    w = worker_factory()
    lb = lb_factory(backend=["w=" + w.addr], static=webdir, proxy_http="/healthz")

    status, h, body = util.http_get(lb.addr, "/")
    assert status == 200 and body == INDEX
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["cache-control"] == "no-cache"
    assert h["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in h["content-security-policy"]
    assert "x-request-id" not in h  # the lb's own answer, not a worker's
    etag = h["etag"]

    status, h2, body = raw(lb.addr, "HEAD /")
    assert status == 200 and body == b"" and h2["content-length"] == str(len(INDEX))
    status, h3, body = raw(lb.addr, "GET /index.html?x=1", "If-None-Match: %s\r\n" % etag)
    assert status == 304 and body == b"" and h3["etag"] == etag
    status, h4, _ = raw(lb.addr, "GET /sub")
    assert status == 301 and h4["location"] == "/sub/"
    status, _, body = raw(lb.addr, "GET /sub/")
    assert status == 200 and body == b"sub\n"
    status, h5, _ = raw(lb.addr, "POST /app.js", "Content-Length: 0\r\n")
    assert status == 405 and h5["allow"] == "GET, HEAD"

    # Unclean paths: refused by the lb itself.
    for bad in ("/../secret.txt", "/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt",
                "/sub/%2E%2E/index.html", "/a%00b", "//index.html", "/sub\\..\\index.html"):
        status, _, body = raw(lb.addr, "GET " + bad)
        assert status == 400 and b"SECRET" not in body, (bad, status, body)
    # Symlinks are not followed: those paths are not the lb's, and the
    # worker has nothing there either.
    for link in ("/secret.txt", "/sub/up/index.html"):
        status, _, body = raw(lb.addr, "GET " + link)
        assert status == 404 and b"SECRET" not in body, (link, status, body)
    # A --proxy-http prefix still reaches the workers (it is decided before
    # the files); a path that is neither a route nor a file is the lb's 404.
    status, _, body = util.http_get(lb.addr, "/healthz")
    assert status == 200 and body == b"ok\n"
    status, _, body = util.http_get(lb.addr, "/metrics")
    assert status == 404 and b"worker_" not in body

    async def ws_run():
        ws, wid = await open_ws(lb.url())
        try:
            return wid, await util.arun(ws, "python3", "print(6*7)")
        finally:
            await ws.close()
    wid, r = asyncio.run(ws_run())
    assert wid == w.id and r.stdout == "42\n"

    m = util.parse_metrics(util.http_get(lb.admin, "/metrics")[2].decode())
    assert m['wslb_lb_static_responses_total{code="200"}'] >= 2
    assert m['wslb_lb_static_responses_total{code="304"}'] == 1
    assert m['wslb_lb_static_responses_total{code="400"}'] == 7
    assert m["wslb_lb_static_files"] == 3


def test_sighup_reloads_and_a_bad_reload_keeps_the_files(lb_factory, webdir):
    lb = lb_factory(static=webdir, static_max_file_kb=4)
    _, h, _ = util.http_get(lb.addr, "/app.js")
    with open(os.path.join(webdir, "app.js"), "w") as f:
        f.write("console.log(2);\n")
    # Not before the reload: nothing is read from disk while serving.
    assert util.http_get(lb.addr, "/app.js")[2] == b"console.log(1);\n"
    lb.stop(signal.SIGHUP)
    util.wait_for(lambda: util.http_get(lb.addr, "/app.js")[2] == b"console.log(2);\n", 10,
                  "the reloaded app.js")
    assert util.http_get(lb.addr, "/app.js")[1]["etag"] != h["etag"]

    with open(os.path.join(webdir, "big.bin"), "wb") as f:
        f.write(b"x" * 5000)
    with open(os.path.join(webdir, "app.js"), "w") as f:
        f.write("console.log(3);\n")
    lb.stop(signal.SIGHUP)
    util.wait_for(lambda: "static files not reloaded" in lb.stderr_text(), 10,
                  "the failed reload in the log")
    assert "big.bin" in lb.stderr_text()
    assert util.http_get(lb.addr, "/app.js")[2] == b"console.log(2);\n"
    assert lb.alive()


def test_refuses_to_start_over_a_cap(webdir):
    with open(os.path.join(webdir, "big.bin"), "wb") as f:
        f.write(b"x" * 3000)
    r = subprocess.run([binary("lb"), "--listen", "127.0.0.1:0", "--admin", "",
                        "--static", webdir, "--static-max-file-kb", "2"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    assert r.returncode == 2, r.stderr
    assert "big.bin" in r.stderr and "per-file cap" in r.stderr, r.stderr
    r = subprocess.run([binary("lb"), "--listen", "127.0.0.1:0", "--admin", "",
                        "--static", os.path.join(webdir, "missing")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    assert r.returncode == 2 and "--static" in r.stderr, r.stderr
