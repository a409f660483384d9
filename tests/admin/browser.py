#!/usr/bin/env python3
"""Checks the admin page of `weir serve` in a real headless Chromium.

Drives chromedriver through its W3C WebDriver HTTP API (standard library only):
loads the admin page, waits for every node of one graph to be drawn, checks that a
node's `rows/s in` figure is 0, sends load to the public listener, waits for the
figure to rise above 0, and saves a screenshot.

    python3 tests/admin/browser.py --admin http://127.0.0.1:PORT --public http://127.0.0.1:PORT2 \
        --graph digits --node softmax --body-file graphs/digits/request.json \
        --screenshot target/test-artifacts/admin-page.png

Exits 0 with a one-line summary, or 1 with the reason on stderr.
"""

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Local servers only: never go through an http_proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Failure(Exception):
    """A check failed; the message says why."""


def http(method, url, body=None, timeout=60.0, content_type="application/json"):
    """One HTTP request; returns (status, body bytes), also for 4xx/5xx answers."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def free_port():
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    """A chromedriver process and (once created) one browser session."""

    def __init__(self, chromedriver):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([chromedriver, f"--port={self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.session = None

    def log_tail(self):
        """The end of chromedriver's output, for error messages."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def wait_ready(self, timeout=15.0):
        """Waits until GET /status says ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"chromedriver exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, body = http("GET", self.base + "/status", timeout=2)
                if status == 200 and json.loads(body)["value"].get("ready"):
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise Failure(f"chromedriver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def command(self, method, path, body=None, timeout=60.0):
        """One WebDriver command; returns its `value`, raises Failure on a WebDriver error."""
        status, raw = http(method, self.base + path, body, timeout=timeout)
        try:
            value = json.loads(raw)["value"]
        except (ValueError, KeyError):
            raise Failure(f"{method} {path}: HTTP {status}, not WebDriver JSON: {raw[:200]!r}")
        if status != 200:
            raise Failure(f"{method} {path}: {value.get('error')}: {value.get('message')}")
        return value

    def start_session(self, chromium):
        args = ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1400,900"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}}}}
        self.session = self.command("POST", "/session", caps)["sessionId"]

    def s(self, path):
        """A path under the current session."""
        return f"/session/{self.session}{path}"

    def navigate(self, url):
        self.command("POST", self.s("/url"), {"url": url})

    def execute(self, script, *args):
        return self.command("POST", self.s("/execute/sync"), {"script": script, "args": list(args)})

    def screenshot(self):
        return base64.b64decode(self.command("GET", self.s("/screenshot")))

    def close(self):
        """Deletes the session and stops chromedriver; never raises."""
        if self.session:
            try:
                self.command("DELETE", self.s(""), timeout=10)
            except Exception:  # the browser may already be gone
                pass
            self.session = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# Names of the given nodes drawn as `[data-graph=G] [data-node=N] text.name` with text N.
JS_NAMES_FOUND = """
const [graph, names] = arguments;
return names.filter(n => {
  const el = document.querySelector(
    `[data-graph="${CSS.escape(graph)}"] [data-node="${CSS.escape(n)}"] text.name`);
  return el !== null && el.textContent === n;
});"""

# data-value of the node's `rows/s in` figure, or null when it is not drawn.
JS_ROWS_IN = """
const [graph, node] = arguments;
const el = document.querySelector(
  `[data-graph="${CSS.escape(graph)}"] [data-node="${CSS.escape(node)}"] text.rows-in`);
return el === null ? null : el.getAttribute('data-value');"""


class Load:
    """Threads POSTing one body to a URL in a loop, counting responses by status."""

    def __init__(self, url, body, threads=4):
        self.url, self.body = url, body
        self.counts, self.lock = {}, threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop_event.is_set():
            try:
                status, _ = http("POST", self.url, self.body, timeout=10)
            except OSError as err:
                status = f"error: {getattr(err, 'reason', err)}"
                time.sleep(0.05)  # no busy loop against a dead server
            with self.lock:
                self.counts[status] = self.counts.get(status, 0) + 1

    def stop(self):
        """Stops the threads; returns the counts by status."""
        self.stop_event.set()
        for t in self.threads:
            t.join(15)
        return dict(self.counts)


def graph_nodes(admin, graph):
    """Node names of one graph, from GET <admin>/admin/graphs."""
    status, body = http("GET", admin + "/admin/graphs", timeout=10)
    if status != 200:
        raise Failure(f"GET {admin}/admin/graphs: HTTP {status}")
    for g in json.loads(body)["graphs"]:
        if g["name"] == graph:
            return [n["name"] for n in g["nodes"]]
    raise Failure(f"graph {graph!r} is not in {admin}/admin/graphs")


def poll(check, timeout=20.0, every=0.25):
    """Calls check() until it returns a true value or timeout passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every)


def run(args):
    admin, public = args.admin.rstrip("/"), args.public.rstrip("/")
    with open(args.body_file, "rb") as f:
        body = f.read()
    names = graph_nodes(admin, args.graph)
    if args.node not in names:
        raise Failure(f"node {args.node!r} is not in graph {args.graph!r}: {names}")

    driver, load = WebDriver(args.chromedriver), None
    try:
        driver.wait_ready()
        driver.start_session(args.chromium)
        driver.navigate(admin + "/")

        # Every node drawn, with its name.
        found = []
        def all_found():
            found[:] = driver.execute(JS_NAMES_FOUND, args.graph, names)
            return len(found) == len(names)
        if not poll(all_found):
            missing = [n for n in names if n not in found]
            raise Failure(f"graph {args.graph!r}: nodes not drawn after 20 s: {missing}")

        rows_in = lambda: driver.execute(JS_ROWS_IN, args.graph, args.node)
        before = rows_in()
        if before is None or float(before) != 0:
            raise Failure(f"{args.node}: rows-in data-value {before!r} before any request, wanted 0")

        load = Load(f"{public}/graphs/{args.graph}", body)
        seen = [before]
        def rising():
            seen[0] = rows_in()
            return seen[0] is not None and float(seen[0]) > 0
        if not poll(rising):
            raise Failure(f"{args.node}: rows-in data-value still {seen[0]!r} after 20 s of load "
                          f"(load so far: {load.counts})")

        png = driver.screenshot()
        if not png.startswith(PNG_SIGNATURE):
            raise Failure(f"screenshot is not a PNG: {png[:16]!r}")
        os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
        with open(args.screenshot, "wb") as f:
            f.write(png)

        counts, load = load.stop(), None
        bad = {k: v for k, v in counts.items() if k != 200}
        if bad or not counts:
            raise Failure(f"load on {public}/graphs/{args.graph}: non-200 answers {bad or counts}")
        print(f"ok: graph {args.graph}: nodes {', '.join(names)} drawn; {args.node} showed "
              f"{seen[0]} rows/s in; load {counts}; screenshot {args.screenshot} ({len(png)} bytes)")
    finally:
        if load is not None:
            load.stop()
        driver.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--admin", required=True, help="admin listener, http://host:port")
    p.add_argument("--public", required=True, help="public listener, http://host:port")
    p.add_argument("--graph", required=True)
    p.add_argument("--node", required=True, help="node whose rows/s in must rise under load")
    p.add_argument("--body-file", required=True, help="JSON request body for the graph")
    p.add_argument("--screenshot", required=True, help="where to write the PNG")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = p.parse_args()
    try:
        run(args)
    except Exception as err:  # any failure: one reason, exit 1
        reason = err if isinstance(err, Failure) else f"{type(err).__name__}: {err}"
        print(f"browser.py: FAIL: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
