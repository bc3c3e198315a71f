"""Headless Chromium for browser tests: Debian's `chromium` driven by Playwright.

Playwright's own browser download (`playwright install`) is never used: it needs the internet and
pins a build the distribution does not patch. Without `chromium` on PATH a browser test is skipped
on a developer's machine and fails under CI (`CI=true`), where a skipped test would hide a broken
dashboard.
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

INSTALL_HINT = "install Debian's chromium: apt-get install chromium"
# As root in a container Chromium's sandbox cannot start; /dev/shm is often too small for it.
LAUNCH_ARGS = ("--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu")
ARTIFACTS = Path(__file__).parent / "artifacts"


def chromium_path() -> str:
    """The path of Debian's chromium; skips the test without it, or fails it when CI=true."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and no chromium on PATH: {INSTALL_HINT}")
    pytest.skip(INSTALL_HINT)


@contextmanager
def headless_chromium() -> Iterator:
    """A Playwright `Browser` on Debian's chromium, closed on exit."""
    path = chromium_path()
    # Imported here so that a test skipped for want of chromium does not need Playwright either.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=list(LAUNCH_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def artifact_path(name: str) -> Path:
    """Where a test keeps an artefact (a screenshot) for people to look at; ignored by git."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
