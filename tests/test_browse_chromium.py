"""The feature browser the reduced demo builds, driven in headless Chromium from disk (no server, no network).

Chromium and its driver come from Debian's packages (``chromium``, ``chromium-driver``);
the test installs them when they are absent and it runs as root with apt-get (as CI
does), and is skipped with the install command otherwise. Selenium (the ``test``
extra) drives Chromium through Debian's chromedriver, which matches its version.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from sae_eeg.sae import load_sae

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install chromium chromium-driver"
# The flags this machine needs: no sandbox as root, and no background connections (the network is closed).
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
LAYER = 3  # the planted layer: seed consistency, all-channel TRFs and topographies exist there
TIMEOUT = 20


def _install_chromium():
    """Install Debian's Chromium and chromedriver if absent and possible; the reason when not."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"Chromium or chromedriver is missing; this test needs root and apt-get to install them: {INSTALL}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            return f"`{' '.join(command)}` failed ({done.stderr.strip()[-300:]}); install them by hand: {INSTALL}"
    return None if CHROMIUM.exists() and CHROMEDRIVER.exists() else f"apt-get did not install them; try {INSTALL}"


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium comes with the test extra: "
                                                                 "pip install -e .[test]")
    from selenium.webdriver.chrome.service import Service

    reason = _install_chromium()
    if reason:
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="sae-eeg-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield chrome
    chrome.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def site(small_demo):
    """The reduced demo's own feature browser (its ``browse`` stage), the site of the planted layer."""
    folder = Path(small_demo["browser"]).parent / f"layer_{LAYER}"
    assert (folder / "index.html").is_file() and (folder / "feature.html").is_file()
    return folder


def _wait(driver, script, what, *args):
    """The first truthy value of ``script`` (polled), or a timeout naming ``what``."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT).until(lambda d: d.execute_script(script, *args), message=what)


def _errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _value(text):
    if text == "\u2013":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _column(driver, key):
    """The displayed values of one index column, top to bottom (numbers as floats, '\u2013' as None)."""
    texts = driver.execute_script(
        "const j = [...document.querySelectorAll('#features thead tr:first-child th')]"
        ".findIndex((th) => th.dataset.key === arguments[0]);"
        "return [...document.querySelectorAll('#features tbody tr')].map((tr) => tr.children[j].textContent);", key)
    return [_value(t) for t in texts]


def _filter(driver, key, text, n_before):
    """Type ``text`` in the filter box of column ``key``; the number of rows left."""
    box = driver.find_element("css selector", f"#features thead input[data-key='{key}']")
    box.clear()
    box.send_keys(text)
    return _wait(driver, "const n = document.querySelectorAll('#features tbody tr').length;"
                         "return n < arguments[0] ? n + 1 : null", f"the filter {key} {text!r}", n_before) - 1


def test_index_lists_sorts_and_filters_every_feature(driver, site, small_demo):
    n_features = load_sae(Path(small_demo["output_dir"]) / "sae", layer=LAYER).n_features
    driver.get_log("browser")  # start from a clean log
    driver.get(Path(small_demo["report"]).as_uri())  # the report links to the browser of each layer
    driver.find_element("link text", f"Layer {LAYER}").click()
    _wait(driver, "return document.querySelectorAll('#features tbody tr').length", "the index table")
    assert driver.current_url == (site / "index.html").as_uri()
    assert _column(driver, "feature") == list(range(n_features))  # every feature, in id order
    assert driver.find_element("id", "count").text == f"{n_features} of {n_features} features shown"

    header = driver.find_element("css selector", "#features th[data-key='rate']")
    header.click()
    rates = _column(driver, "rate")
    assert rates == sorted(rates) and _column(driver, "feature")[:5] != list(range(5))
    header.click()
    assert _column(driver, "rate") == sorted(rates, reverse=True)

    n_shown = _filter(driver, "rate", ">1", n_features)
    assert 0 < n_shown < n_features and all(r > 1 for r in _column(driver, "rate"))
    driver.find_element("id", "reset").click()
    protocol = pd.read_parquet(Path(small_demo["output_dir"]) / "alignment" / f"layer_{LAYER}" / "group"
                               / "protocol_features.parquet")
    significant = sorted(protocol.loc[protocol.significant, "feature"].unique())
    assert 0 < len(significant) < n_features
    _filter(driver, "protocol.significant", "yes", n_features)
    assert sorted(_column(driver, "feature")) == significant
    drawn = driver.execute_script("const c = document.getElementById('map');"
                                  "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
                                  ".some((v, i) => i % 4 === 3 && v > 0);")
    assert drawn  # the t-SNE map has points
    driver.find_element("id", "reset").click()
    driver.execute_script("window.scrollTo(0, 0); document.querySelector('#table-section .scroll').scrollTo(0, 0)")
    (site / "screenshots").mkdir(exist_ok=True)
    driver.save_screenshot(str(site / "screenshots" / "index.png"))
    assert _errors(driver) == []

    # a point of the map is a link to its feature's page
    from selenium.webdriver import ActionChains

    canvas = driver.find_element("id", "map")
    x, y = driver.execute_script(  # the first opaque pixel: inside a point
        "const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "for (let i = 3; i < d.length; i += 4) {"
        "  if (d[i] === 255) return [(i >> 2) % c.width, Math.floor((i >> 2) / c.width)]; }", canvas)
    ActionChains(driver).move_to_element_with_offset(canvas, x - canvas.size["width"] // 2,
                                                     y - canvas.size["height"] // 2).click().perform()
    _wait(driver, "return location.hash.length > 1 && document.getElementById('title').textContent"
                  ".startsWith('Feature ')", "the feature page of a map point")
    assert driver.current_url.split("#")[0].endswith("/feature.html")
    assert _errors(driver) == []


def test_feature_page_shows_trf_topography_and_plays_its_clips(driver, site, small_demo):
    cluster = pd.read_parquet(next((Path(small_demo["output_dir"]) / "alignment" / f"layer_{LAYER}" / "subjects")
                                   .glob("*/cluster_trf.parquet")))
    feature = int(cluster.feature.min())  # a planted feature: it has all-channel TRFs
    driver.get_log("browser")
    driver.get((site / "feature.html").as_uri() + f"#{feature}")
    _wait(driver, "return document.querySelector('#trf canvas') && document.querySelectorAll('.clip').length",
          "the TRF chart and the clips")
    assert driver.find_element("id", "title").text == f"Feature {feature}"
    channels = driver.execute_script("return [...document.querySelectorAll('#channel option')].map((o) => o.value)")
    assert set(channels) <= set(small_demo["config"]["alignment"]["protocol"]["channels"]) and channels
    assert _wait(driver, "const img = document.getElementById('topo');"
                         "return img.complete && img.naturalWidth > 0 && !img.hidden && img.naturalWidth",
                 "the topography image") > 100
    n_clips = driver.execute_script("return document.querySelectorAll('.clip audio').length")
    assert 0 < n_clips <= 8 and driver.execute_script("return document.querySelectorAll('.clip canvas').length")
    duration = _wait(driver, "const a = document.querySelector('.clip audio');"
                             "return a.readyState >= 1 && a.duration > 0 && a.duration", "an audio duration")
    assert 0.5 < duration <= 2.05
    assert driver.execute_script("return document.querySelectorAll('#neighbours a').length") == 10
    assert driver.execute_script("return document.querySelector('#tables [data-table=protocol] tbody tr') !== null")
    driver.set_window_size(1400, 2400)
    (site / "screenshots").mkdir(exist_ok=True)
    driver.save_screenshot(str(site / "screenshots" / f"feature_{feature}.png"))
    driver.set_window_size(1400, 1000)
    driver.find_element("id", "next").click()  # moving on loads the next feature from its data file
    _wait(driver, f"return document.getElementById('title').textContent === 'Feature {feature + 1}'", "next feature")
    assert _errors(driver) == []
