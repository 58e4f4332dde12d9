"""The console's community panel in headless Chromium: the vote and the MTF tier counts."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.service.test_dashboard import (
    ServiceThread,
    _browser,
    _errors,
    _sign_in,
    requires_chromium,
)

OPTIONS = {
    "options": [
        {"name": "lifeline", "label": "Bigger lifeline", "policy": {"lifeline_wh_per_day": 300}},
        {"name": "business", "label": "More for businesses", "policy": {"lifeline_wh_per_day": 80}},
    ]
}


@pytest.mark.slow
@requires_chromium
def test_community_panel_shows_the_vote_and_mtf_and_takes_a_vote(tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("LASTWATT_ARTIFACTS", tmp_path)) / "console"
    shots.mkdir(parents=True, exist_ok=True)
    driver = _browser(tmp_path / "chromium")
    wait = WebDriverWait(driver, 40, ignored_exceptions=(StaleElementReferenceException,))
    try:
        with ServiceThread(tmp_path / "data") as service:
            url = service.runtime.url
            offered = httpx.put(
                url + "api/community/vote/options",
                json=OPTIONS,
                auth=("operator", service.passwords["operator"]),
                timeout=30,
            )
            assert offered.status_code == 200, offered.text
            _sign_in(driver, url, "amina", service.passwords["amina"])
            panel = wait.until(lambda d: d.find_element(By.ID, "community"))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vote-table tbody tr"))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#mtf-table td[data-tier]"))
            assert panel.is_displayed()
            labels = driver.find_element(By.ID, "vote-table").text
            assert "Bigger lifeline" in labels
            assert "More for businesses" in labels
            button = "#vote-table tr[data-option='business'] .vote-cast"
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, button)).click()
            count = "#vote-table tr[data-option='business'] .vote-count"
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, count).text == "1")
            assert driver.find_element(By.ID, "vote-turnout").text != "0.0 %"
            tiers = driver.find_elements(By.CSS_SELECTOR, "#mtf-table td[data-tier]")
            assert sum(int(td.text) for td in tiers) == 1  # a resident sees their own household
            driver.save_screenshot(str(shots / "community.png"))
            # On a 390 px phone the panel fits the width.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
            )
            driver.refresh()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vote-table tbody tr"))
            width = driver.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, f"the overview with the community panel is {width} px wide"
            driver.save_screenshot(str(shots / "community-phone.png"))
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            # The panel belongs to the overview only.
            driver.get(url + "#/me")
            wait.until(lambda d: not d.find_element(By.ID, "community").is_displayed())
            assert _errors(driver) == []
    finally:
        driver.quit()
