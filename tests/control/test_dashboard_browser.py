"""The dashboard in a real headless Chromium, against real nodes on loopback.

The nodes are ``twistd pokan`` child processes (the installed pokan: run
``pip install .`` first), so nothing here needs a reactor: Playwright's sync
API blocks, and the nodes run on their own. The browser is Debian's
``chromium`` (``make browser`` installs it); Playwright's own browser builds
are never downloaded. Every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from twisted.trial import unittest

from tests.support import TWISTD, Daemon, free_port, run, temp_dir

#: the console script installed beside this Python
POKAN = os.path.join(os.path.dirname(sys.executable), "pokan")
#: milliseconds the page gets to show a change
PAGE_WAIT_MS = 20_000
#: seconds a node gets to answer /v1/health with 200
START_WAIT = 30.0
INTERVAL = "0.1"
PHONE = {"width": 390, "height": 844}


def chromium_or_skip() -> str:
    """Debian's chromium, or a skip saying why there is none."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(
            "no chromium here and none could be installed: `make browser` runs"
            " `apt-get install chromium` (Debian); this test needs a real browser"
        )
    return path


class Node:
    """One ``twistd pokan`` child with its control API on a free port."""

    def __init__(
        self,
        test: unittest.TestCase,
        cwd: str,
        seed: Node | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.control_port = free_port()
        self.id = f"127.0.0.1:{self.port}"
        self.control = f"127.0.0.1:{self.control_port}"
        self.url = f"http://{self.control}/"
        args = [
            TWISTD, "-n", "--pidfile=", "pokan", "--address", "127.0.0.1",
            "--tcp-port", str(self.port), "--udp-port", str(self.port),
            "--gossip-interval", INTERVAL, "--control", self.control, *extra,
        ]  # fmt: skip
        if seed is not None:
            args += ["--gossip-with", f"127.0.0.1:{seed.port}"]
        self.daemon = Daemon(test, args, cwd)

    def wait_healthy(self, token: str | None = None) -> None:
        """Return once /v1/health answers 200; fail at the deadline."""
        deadline = time.monotonic() + START_WAIT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.daemon.exited():
                raise AssertionError(f"node exited:\n{self.daemon.describe()}")
            try:
                self.call("GET", "v1/health", token=token)
                return
            except urllib.error.HTTPError as e:
                last = f"{e.code} {e.read()[:200]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        raise AssertionError(
            f"{self.control} not healthy after {START_WAIT}s ({last}):\n"
            f"{self.daemon.describe()}"
        )

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def set_with_cli(self, cwd: str, key: str, value: str) -> None:
        result = run([POKAN, "set", "--control", self.control, key, value], cwd=cwd)
        if result.returncode != 0:
            raise AssertionError(
                f"pokan set failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )


class DashboardBrowserTests(unittest.TestCase):
    def setUp(self) -> None:
        self.chromium = chromium_or_skip()
        # a dev extra: missing means the dev install is missing, not a skip
        from playwright.sync_api import sync_playwright

        self.dir = temp_dir(self)
        self.playwright = sync_playwright().start()
        self.addCleanup(self.playwright.stop)
        self.browser = self.playwright.chromium.launch(
            executable_path=self.chromium, headless=True
        )
        self.addCleanup(self.browser.close)
        self.page_errors: list[str] = []

    def open(self, url: str, **context: Any) -> Any:
        page = self.browser.new_context(**context).new_page()
        page.set_default_timeout(PAGE_WAIT_MS)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.goto(url)
        return page

    def test_cluster_live(self) -> None:
        from playwright.sync_api import expect

        first = Node(self, self.dir)
        first.wait_healthy()
        second = Node(self, self.dir, seed=first)
        third = Node(self, self.dir, seed=first)
        second.wait_healthy()
        third.wait_healthy()

        page = self.open(first.url, viewport={"width": 1280, "height": 900})
        members = page.locator("#members tbody tr")
        expect(members.and_(page.locator("[data-status=alive]"))).to_have_count(3)
        expect(page.locator("#members-count")).to_have_text("3 alive of 3")
        expect(page.locator(f'tr.me[data-node="{first.id}"]')).to_contain_text(
            "this node"
        )
        expect(page.locator("#fig-alive")).to_have_text("2")
        expect(page.locator("#stream")).to_have_text("events: live")
        # messages per second: from two /v1/info samples 2 s apart
        expect(page.locator("#fig-rate")).to_have_text(_positive_number())
        page.evaluate("window.notReloaded = true")

        # a key set on another node shows up here, by gossip and the event stream
        second.set_with_cli(self.dir, "colour", "blue")
        row = page.locator(f'#keys tr[data-node="{second.id}"][data-key="colour"]')
        expect(row).to_contain_text("blue")
        expect(row).to_contain_text("str")
        expect(
            page.locator("#events li[data-event=new_key]").filter(has_text="colour")
        ).not_to_have_count(0)

        # bytes travel as base64 and are marked as such
        raw = bytes(range(0, 256, 17))
        encoded = base64.b64encode(raw).decode()
        first.call("PUT", "v1/keys/blob", {"value": encoded, "type": "bytes"})
        blob = page.locator(f'#keys tr[data-node="{first.id}"][data-key="blob"]')
        expect(blob).to_contain_text(encoded)
        expect(blob).to_contain_text("bytes · base64")
        # a value is text, never markup
        first.call(
            "PUT", "v1/keys/html", {"value": "<b id=injected>x</b>", "type": "str"}
        )
        expect(page.locator('#keys tr[data-key="html"]')).to_contain_text(
            "<b id=injected>x</b>"
        )
        self.assertEqual(page.locator("#injected").count(), 0)

        # a node killed with SIGKILL is convicted: its row says dead
        os.kill(third.daemon.process.pid, signal.SIGKILL)
        third.daemon.process.wait(10)
        dead = page.locator(f'#members tr[data-node="{third.id}"]')
        expect(dead).to_have_attribute("data-status", "dead")
        expect(dead.locator(".status")).to_have_text("dead")
        expect(page.locator("#members-count")).to_have_text("2 alive of 3")
        expect(page.locator("#fig-dead")).to_have_text("1")
        expect(
            page.locator("#events li[data-event=peer_dead]").filter(has_text=third.id)
        ).to_have_count(1)

        # the feed follows key and membership events, not every gossip round
        self.assertEqual(page.locator("#events li[data-event$=_gossip]").count(), 0)
        self.assertTrue(page.evaluate("window.notReloaded === true"))
        screenshot = os.path.join(self.dir, "dashboard.png")
        page.screenshot(path=screenshot, full_page=True)
        self.assertGreater(os.path.getsize(screenshot), 10_000)

        # on a phone: one column, nothing wider than the screen
        phone = self.open(first.url, viewport=PHONE, is_mobile=True, has_touch=True)
        expect(phone.locator("#members tbody tr")).to_have_count(3)
        expect(phone.locator('#keys tr[data-key="colour"]')).to_have_count(1)
        width = phone.evaluate("document.documentElement.scrollWidth")
        self.assertLessEqual(width, PHONE["width"])
        phone.screenshot(
            path=os.path.join(self.dir, "dashboard-phone.png"), full_page=True
        )
        self.assertEqual(self.page_errors, [])

    def test_token_asked_and_sent(self) -> None:
        from playwright.sync_api import expect

        token = "dashboard-test-token-0123456789"
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        os.chmod(token_file, 0o600)
        node = Node(self, self.dir, extra=("--control-token-file", token_file))
        node.wait_healthy(token=token)

        page = self.open(node.url)
        form = page.locator("#token-form")
        expect(form).to_be_visible()
        page.fill("#token-input", "not-the-token-0123456789")
        page.click("#token-form button[type=submit]")
        expect(page.locator("#token-error")).to_contain_text("refused")

        page.fill("#token-input", token)
        page.click("#token-form button[type=submit]")
        expect(form).to_be_hidden()
        expect(page.locator("#members tbody tr[data-status=alive]")).to_have_count(1)
        expect(page.locator("#stream")).to_have_text("events: live")
        self.assertEqual(
            page.evaluate("sessionStorage.getItem('pokan.controlToken')"), token
        )
        # the event stream is read with the same header: a key event arrives
        node.call("PUT", "v1/keys/seen", {"value": "yes", "type": "str"}, token=token)
        expect(page.locator("#events li[data-event=new_key]")).to_contain_text("seen")
        # a reload in the same tab keeps the token; the page asks no more
        page.reload()
        expect(page.locator("#members tbody tr[data-status=alive]")).to_have_count(1)
        expect(form).to_be_hidden()
        self.assertEqual(self.page_errors, [])


def _positive_number() -> Any:
    import re

    return re.compile(r"^(?!0\.0$)\d+(\.\d)?$")
