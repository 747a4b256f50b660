"""Headless Chromium (Debian's, driven by Playwright) for the tests that check what a person sees."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCAL = ("file:", "data:", "blob:", "about:", "http://127.0.0.1", "http://localhost")


@contextlib.contextmanager
def browser_page(offline: bool = True, size: tuple[int, int] = (1400, 900)) -> Iterator:
    """A page whose every request off this machine is refused; with ``offline``, every request but to files.

    The refused URLs are listed in ``page.refused``.
    """
    from playwright.sync_api import sync_playwright

    allowed = ("file:", "data:", "blob:", "about:") if offline else LOCAL
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": size[0], "height": size[1]})
            page = context.new_page()
            page.refused = []

            def guard(route):
                if route.request.url.startswith(allowed):
                    route.continue_()
                else:
                    page.refused.append(route.request.url)
                    route.abort()

            context.route("**/*", guard)
            yield page
        finally:
            browser.close()


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
