"""The operator console in a real headless Chromium (Selenium, Debian's chromium and driver).

One service on a simulated container at 60×, one browser: every view loads with live
numbers and no console error, an operator action reaches the simulated meter's coil and
the page shows it, a resident sees only their own accounts, nothing is wider than a 390 px
phone, ``/docs`` renders offline, and the stale banner shows within one refresh after the
service stops. Screenshots go to ``$LASTWATT_ARTIFACTS/console`` (CI keeps them) or the
test's temporary folder.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import threading
import time
from pathlib import Path

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

VIEWS = {  # route → an element that holds live content once the view has loaded
    "": "#connections tbody tr",
    "alarms": "#alarms tbody tr",
    "history": "#h-load .u-over",
    "customers": "#customers tbody tr",
    "map": "#village .leaflet-interactive",
    "actions": "form[data-action='relay']",
}


class ServiceThread:
    """A live-numbers service (simulated container at 60× on an anchored clock)."""

    def __init__(self, data_dir: Path):
        self.site = service_site()
        self.passwords = init_credentials(data_dir, {"amina": self.site.households[0].id})
        options = RunOptions(
            port=0,
            simulate=True,
            speed=60.0,
            start=MORNING.replace(hour=10),
            opening_credit_minor=dict.fromkeys(ConnectionKind, 2000000),
        )
        self.runtime = Runtime(
            self.site, config(data_dir, cycle_s=10.0), load_credentials(data_dir), options
        )
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.runtime.start())
        self.stop_event = asyncio.Event()
        self.task = self.loop.create_task(self.runtime.run(None, self.stop_event))
        self.ready.set()
        self.loop.run_until_complete(self.task)
        self.loop.run_until_complete(self.runtime.stop())
        self.loop.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(60)
        return self

    def stop(self):
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(30)

    def __exit__(self, *exc):
        self.stop()

    def meter_coil(self, connection_id: str) -> bool:
        c = self.site.connection(connection_id)
        device = self.runtime.sim.devices[(c.meter.gateway, c.meter.unit_id)]
        return bool(device.coils[c.meter.relay_coil])


def _browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

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
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)


def _sign_in(driver, url: str, user: str, password: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    driver.get(url + "#/")
    driver.execute_script(f"sessionStorage.setItem('lw_auth', '{token}');")
    driver.refresh()  # the console reads the session when it starts


def _errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.slow
@requires_chromium
def test_console_views_actions_roles_phone_docs_and_stale_state(tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    shots = Path(os.environ.get("LASTWATT_ARTIFACTS", tmp_path)) / "console"
    shots.mkdir(parents=True, exist_ok=True)
    driver = _browser(tmp_path / "chromium")
    # The console redraws its tables every refresh: an element found just before a redraw
    # is stale a moment later, so a wait tries again rather than failing.
    wait = WebDriverWait(driver, 40, ignored_exceptions=(StaleElementReferenceException,))
    try:
        with ServiceThread(tmp_path / "data") as service:
            url = service.runtime.url
            site = service.site
            _sign_in(driver, url, "operator", service.passwords["operator"])
            wait.until(lambda d: d.find_element(By.ID, "soc").text not in ("", "–"))
            first_clock = driver.find_element(By.ID, "clock").text
            wait.until(lambda d: d.find_element(By.ID, "clock").text != first_clock)

            # Every view loads with live content and no console error.
            for route, selector in VIEWS.items():
                driver.get(f"{url}#/{route}")
                wait.until(lambda d, s=selector: d.find_elements(By.CSS_SELECTOR, s))
                driver.save_screenshot(str(shots / f"{route or 'overview'}.png"))
            business = site.businesses[0].id
            target = site.households[1].id  # its prepaid relay is closed while it has credit
            driver.get(f"{url}#/c/{business}")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#cp-plan tbody tr"))
            driver.save_screenshot(str(shots / "connection.png"))
            assert _errors(driver) == []

            # An operator action reaches the meter's coil, and the page shows it.
            wait.until(lambda d: service.meter_coil(target))
            driver.get(f"{url}#/actions")
            form = wait.until(
                lambda d: d.find_element(By.CSS_SELECTOR, "form[data-action='relay']")
            )
            form.find_element(By.NAME, "id").send_keys(target)
            Select(form.find_element(By.NAME, "closed")).select_by_value("false")
            form.find_element(By.NAME, "reason").send_keys("maintenance of the mill")
            form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            wait.until(lambda d: form.find_element(By.CLASS_NAME, "msg").text != "")
            assert "on" in form.find_element(By.CLASS_NAME, "msg").get_attribute("class")
            wait.until(lambda d: not service.meter_coil(target))
            driver.get(url + "#/")
            row = f"//table[@id='connections']//tr[td/a[text()='{target}']]/td[3]"
            wait.until(lambda d: d.find_element(By.XPATH, row).get_attribute("class") == "off")

            # A phone: nothing wider than 390 px on any view.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
            )
            for route, selector in VIEWS.items():
                driver.get(f"{url}#/{route}")
                wait.until(lambda d, s=selector: d.find_elements(By.CSS_SELECTOR, s))
                width = driver.execute_script("return document.documentElement.scrollWidth")
                assert width <= 390, f"#/{route} is {width} px wide on a 390 px phone"
            driver.save_screenshot(str(shots / "overview-phone.png"))
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

            # A resident sees only their own accounts.
            driver.execute_script("sessionStorage.clear();")
            _sign_in(driver, url, "amina", service.passwords["amina"])
            driver.get(url + "#/me")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#me-meters tbody tr"))
            meters = driver.execute_script(  # read in one go: the table is redrawn every refresh
                "return [...document.querySelectorAll('#me-meters tbody td:first-child')]"
                ".map((e) => e.textContent)"
            )
            assert meters == [site.households[0].id]
            visible = [
                e.text for e in driver.find_elements(By.CSS_SELECTOR, "#nav a") if e.is_displayed()
            ]
            assert not {"Customers", "Map", "Actions", "Clients", "Carte"} & set(visible)
            driver.save_screenshot(str(shots / "resident.png"))
            assert _errors(driver) == []

            # The API docs render from the package (the container has no internet).
            driver.get(url + "docs")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info"))
            driver.save_screenshot(str(shots / "docs.png"))
            assert _errors(driver) == []

            # The service stops: the page says so within one refresh.
            _sign_in(driver, url, "operator", service.passwords["operator"])
            wait.until(lambda d: d.find_element(By.ID, "soc").text not in ("", "–"))
            service.stop()
            stopped = time.monotonic()
            WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "stale").is_displayed())
            assert time.monotonic() - stopped < 2 * 2.0 + 2.0  # one 2 s refresh (+ fetch timeout)
            driver.save_screenshot(str(shots / "stale.png"))
    finally:
        driver.quit()
