"""A headless Chromium driven over the DevTools protocol: Debian's `chromium` and the
websocket-client package, nothing downloaded at test time (Playwright would fetch a browser of its
own). Used by check_dashboard.py and Benchmarks/dashboard."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import websocket


class Browser:
    def __init__(self, chromium=None, width=1440, height=1000):
        exe = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            raise SystemExit("chromium is missing: apt-get install -y chromium")
        self.dir = tempfile.mkdtemp(prefix="tuna-chromium-")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={self.dir}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.dir, "DevToolsActivePort")
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        pages = [t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list")) if t["type"] == "page"]
        # A page whose script holds its main thread answers only when done: wait as long as that takes.
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], suppress_origin=True, timeout=900)
        self.next_id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails'].get('exception', {}).get('description', r['exceptionDetails'])}")
        return r["result"].get("value")

    def goto(self, url, timeout=30):
        """Navigates and waits until the new document has loaded (the old one is marked so that it
        is not mistaken for the new)."""
        self.eval("window.__tunaOld = true")
        self.call("Page.navigate", url=url)
        self.wait("!window.__tunaOld && document.readyState === 'complete'", timeout, what=f"{url} to load")

    def wait(self, expression, timeout=30, what=None):
        deadline = time.time() + timeout
        while True:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None   # mid-navigation: the context is being replaced
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or expression}")
            time.sleep(0.1)

    def login(self, url, token, next_path="/"):
        """Logs in to a Tuna dashboard through its login form, as a person would."""
        self.goto(f"{url}/login?next={urllib.parse.quote(next_path)}")
        self.eval(f"document.querySelector('input[name=token]').value = {json.dumps(token)}; window.__tunaOld = true; document.forms[0].submit()")
        self.wait("!window.__tunaOld && document.readyState === 'complete'", 30, "the login to go through")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.dir, ignore_errors=True)
