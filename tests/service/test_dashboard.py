"""The dashboard in a real headless Chromium (Selenium, Debian's chromium and chromedriver)."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time

import httpx
import pytest

from lastwatt.auth import init_credentials, load_credentials
from lastwatt.runtime import RunOptions, Runtime
from microgrid.site import ConnectionKind
from tests.service.conftest import MORNING, config, service_site

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

# CI installs the browser and sets LASTWATT_REQUIRE_BROWSER=1, so there it fails, not skips.
requires_chromium = pytest.mark.skipif(
    (shutil.which("chromium") is None or shutil.which("chromedriver") is None)
    and not os.environ.get("LASTWATT_REQUIRE_BROWSER"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


class ServiceThread:
    """A live-numbers service (simulated container at 60× on an anchored clock)."""

    def __init__(self, data_dir):
        init_credentials(data_dir)
        site = service_site()
        options = RunOptions(
            port=0,
            simulate=True,
            speed=60.0,
            start=MORNING.replace(hour=10),
            opening_credit_minor=dict.fromkeys(ConnectionKind, 2000000),
        )
        self.runtime = Runtime(
            site, config(data_dir, cycle_s=10.0), load_credentials(data_dir), options
        )
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.runtime.start())
        self.stop = asyncio.Event()
        self.task = self.loop.create_task(self.runtime.run(None, self.stop))
        self.ready.set()
        self.loop.run_until_complete(self.task)
        self.loop.run_until_complete(self.runtime.stop())
        self.loop.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(60)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


@pytest.mark.slow
@requires_chromium
def test_dashboard_loads_shows_live_numbers_and_logs_no_errors(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with ServiceThread(tmp_path / "data") as service:
        url = service.runtime.url
        driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: d.find_element(By.ID, "soc").text not in ("", "–"))
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#connections tbody tr")) > 0)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#plan-chart rect")) > 0)
            first_clock = driver.find_element(By.ID, "clock").text
            time.sleep(3)  # the page polls: simulated time moves on screen
            wait.until(lambda d: d.find_element(By.ID, "clock").text != first_clock)
            soc_shown = float(driver.find_element(By.ID, "soc").text)
            pv_shown = driver.find_element(By.ID, "pv-now").text
            rows = driver.find_elements(By.CSS_SELECTOR, "#connections tbody tr")
            stakes = driver.find_elements(By.CSS_SELECTOR, "#stakes tbody tr")
            title = driver.title
            logs = driver.get_log("browser")
        finally:
            driver.quit()
        status = httpx.get(url + "api/status").json()
    assert "LastWatt" in title
    assert abs(soc_shown - 100 * status["soc_fraction"]) < 10
    assert pv_shown not in ("", "–")
    assert len(rows) == len(service.runtime.site.connections)
    assert len(stakes) == len(service.runtime.site.businesses)
    errors = [entry for entry in logs if entry["level"] == "SEVERE"]
    assert errors == []
