"""report.html of a real demo run, in a real headless browser (Debian's chromium + chromium-driver).

The page is what a curator audits, so it is checked the way they use it: the frames behind the
verdicts load (lazily, from thumbs/ beside the page), a click on a column header sorts the
per-class table and the filter box filters it. A screenshot is saved for a human look.
"""

from __future__ import annotations

import shutil

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                 reason="needs Debian's chromium and chromium-driver (install.sh)")]


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, demo_run):
    out, _ = demo_run
    browser.get((out / "report" / "report.html").as_uri())
    return browser


def _column(driver, name: str) -> list[str]:
    """The visible cells of a column of the per-class table, top to bottom."""
    return driver.execute_script(
        """const table = document.getElementById('classes');
           const col = Array.from(table.tHead.rows[0].cells).findIndex(th => th.textContent.startsWith(arguments[0]));
           return Array.from(table.tBodies[0].rows).filter(r => !r.hidden).map(r => r.cells[col].textContent);""",
        name)


def test_thumbnails_load_when_scrolled_into_view(page, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    images = page.find_elements("css selector", "section.sheet img")
    assert len(images) >= 4  # the demo's kept cat and espresso, its rejected goldfish and teapot, ...
    assert {img.get_attribute("loading") for img in images} == {"lazy"}
    for img in images:
        page.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
        WebDriverWait(page, 10).until(lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0;", img))
        assert page.execute_script("return arguments[0].naturalWidth;", img) == 112
    captions = " ".join(f.text for f in page.find_elements("css selector", "section.sheet figcaption"))
    assert "Egyptian cat\nframe 0 · score" in captions  # a rejected clip names what the classifier saw instead
    page.execute_script("document.getElementById('n02124075').scrollIntoView();")
    page.save_screenshot(str(tmp_path / "report-sheets.png"))
    page.execute_script("document.getElementById('filter').scrollIntoView();")
    page.save_screenshot(str(tmp_path / "report-table.png"))
    assert (tmp_path / "report-sheets.png").stat().st_size > 10_000


def test_header_click_sorts_the_class_table(page):
    header = next(th for th in page.find_elements("css selector", "#classes th") if th.text == "candidates")
    header.click()
    ascending = [int(v) for v in _column(page, "candidates")]
    assert ascending == sorted(ascending) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    descending = [int(v) for v in _column(page, "candidates")]
    assert descending == sorted(ascending, reverse=True) and descending != ascending
    name = next(th for th in page.find_elements("css selector", "#classes th") if th.text == "name")
    name.click()
    names = _column(page, "name")
    assert names == sorted(names, key=str.lower)


def test_filter_box_filters_rows_and_sheets(page):
    box = page.find_element("id", "filter")
    every = len(_column(page, "wnid"))
    box.send_keys("N07920052")  # case-insensitive; 'espresso' would also match 'espresso maker'
    assert _column(page, "name") == ["espresso"] and every > 1
    shown = [s.get_attribute("id") for s in page.find_elements("css selector", "section.sheet") if s.is_displayed()]
    assert shown == ["n07920052"]
    assert page.find_element("id", "shown").text == f"1 of {every} classes"
    box.clear()
    box.send_keys(" ")  # clear() fires no input event; a blank query shows everything again
    assert len(_column(page, "wnid")) == every
