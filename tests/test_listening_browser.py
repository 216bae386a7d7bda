"""listen.py in a real browser (Debian's Chromium, headless, through Selenium): the explorer
(change method and q, play, a bad upload), then two participants at once through a whole
listening test (one closes the tab and resumes), then the database, the export and the analysis.

Needs ``chromium`` and ``chromium-driver`` (apt; ``.ci/run`` installs them): missing, the tests
fail under ``CI=true`` and are skipped elsewhere. Screenshots of every page go to
``$LISTEN_SCREENSHOTS`` (default: the test's temporary folder).
"""

import csv
import io
import os
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from listening_helpers import Server, trial_conditions

from recipes.listening.analysis import analyse
from recipes.listening.db import HIDDEN_REFERENCE, ListeningDB

RULE = {"by_design": 70, "gradcam": 55, "energy": 40, "random": 10, HIDDEN_REFERENCE: 100}


def _browser_or_skip():
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = (
            f"the browser tests need {', '.join(missing)}: apt-get install chromium "
            "chromium-driver; pip install -r requirements.txt (.ci/run does both)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def new_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


@pytest.fixture(scope="module")
def served(classifier_runs, listening_test, tmp_path_factory):
    """A server (subprocess) with the explorer of the tiny FocalNet run and the 3-clip test."""
    _browser_or_skip()
    root = tmp_path_factory.mktemp("listen_browser")
    server = Server(
        f"--model_folder={classifier_runs['focalnet']}",
        f"--test={listening_test[0]}",
        f"--db={root / 'answers.sqlite'}",
        f"--cache_folder={root / 'cache'}",
    )
    shots = Path(os.environ.get("LISTEN_SCREENSHOTS", root / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    yield server, root / "answers.sqlite", shots
    server.kill()


def wait(driver, condition, timeout=120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda _: condition())


def test_explore_page_changes_method_and_q_and_plays(served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    server, _, shots = served
    driver = new_driver()
    try:
        driver.get(server.base + "/")
        driver.save_screenshot(str(shots / "index.png"))
        driver.find_element(By.ID, "to-explore").click()
        status = lambda: driver.find_element(By.ID, "status").text  # noqa: E731
        wait(driver, lambda: "by design" in status())
        driver.save_screenshot(str(shots / "explore.png"))
        Select(driver.find_element(By.ID, "method")).select_by_value("energy")
        wait(driver, lambda: status().startswith("energy, q = 0.90: computed"))

        def set_q(value):
            driver.execute_script(
                "const q = document.getElementById('q'); q.value = arguments[0];"
                "q.dispatchEvent(new Event('input')); q.dispatchEvent(new Event('change'));",
                value,
            )

        set_q("0.5")
        wait(driver, lambda: status().startswith("energy, q = 0.50: computed"))
        assert "keeps 50.0 %" in driver.find_element(By.ID, "share").text
        picture_at_half = driver.find_element(By.ID, "picture").get_attribute("src")
        driver.save_screenshot(str(shots / "explore_energy_q050.png"))
        set_q("0.9")
        wait(driver, lambda: status().startswith("energy, q = 0.90: from the cache"))
        assert driver.find_element(By.ID, "picture").get_attribute("src") != picture_at_half
        rows = driver.find_elements(By.CSS_SELECTOR, "#top tbody tr")
        assert len(rows) == 3 and "class" in rows[0].text
        # play the interpretation: the browser decodes the WAV and its clock runs
        driver.execute_script("document.getElementById('play-interpretation').play()")
        wait(
            driver,
            lambda: driver.execute_script(
                "const a = document.getElementById('play-interpretation');"
                "return a.duration > 4.9 && a.currentTime > 0.2 && !a.error;"
            ),
            timeout=30,
        )
        # a soft method greys q out
        Select(driver.find_element(By.ID, "method")).select_by_value("gradcam_soft")
        wait(driver, lambda: status().startswith("Grad-CAM (soft): computed"))
        assert driver.find_element(By.ID, "q").get_attribute("disabled") == "true"
        # a file that is not audio: a message, and the server goes on
        bad = Path(served[1]).parent / "notes.txt"
        bad.write_text("not audio")
        driver.find_element(By.ID, "upload").send_keys(str(bad))
        error = driver.find_element(By.ID, "error")
        wait(driver, error.is_displayed, timeout=30)
        assert "notes.txt: not a readable audio file" in error.text
        driver.save_screenshot(str(shots / "explore_bad_upload.png"))
        Select(driver.find_element(By.ID, "method")).select_by_value("by_design")
        wait(driver, lambda: status().startswith("by design, q = 0.90"))
    finally:
        driver.quit()


def take_test(server, database, shots, number):
    """One participant through the whole test in their own browser; participant 0 closes
    the tab after two pages and resumes from the start page. Returns their id."""
    from selenium.webdriver.common.by import By

    driver = new_driver()
    db = ListeningDB(database)
    try:
        driver.get(server.base + "/test")
        if number == 0:
            driver.save_screenshot(str(shots / "test_start.png"))
        driver.find_element(By.ID, "start").click()
        wait(driver, lambda: driver.find_element(By.ID, "progress").text.startswith("Page 1"))
        participant = driver.find_element(By.ID, "trial").get_attribute("data-participant")
        plan = trial_conditions(db, participant)
        for position, (kind, conditions) in plan.items():
            wait(
                driver,
                lambda page=position + 1: (
                    f"Page {page} of" in driver.find_element(By.ID, "progress").text
                ),
            )
            if kind == "mushra":
                sliders = driver.find_elements(By.CSS_SELECTOR, "#slots input[type=range]")
                assert len(sliders) == len(conditions)
                for slot, name in enumerate(conditions):
                    driver.execute_script(
                        "const s = arguments[0]; s.value = arguments[1];"
                        "s.dispatchEvent(new Event('input'));"
                        "s.dispatchEvent(new Event('change'));",
                        sliders[slot],
                        RULE[name],
                    )
            else:
                best = max(range(2), key=lambda slot: RULE[conditions[slot]])
                driver.find_element(By.CSS_SELECTOR, f"input[name=choice][value='{best}']").click()
            next_button = driver.find_element(By.ID, "next")
            wait(driver, next_button.is_enabled, timeout=30)
            if number == 0:
                driver.save_screenshot(str(shots / f"test_page_{kind}.png"))
            next_button.click()
            if number == 0 and position == 1:  # close the tab, come back, resume
                wait(driver, lambda: "Page 3 of" in driver.find_element(By.ID, "progress").text)
                driver.get("about:blank")
                driver.get(server.base + "/test")
                link = driver.find_element(By.ID, "resume-link")
                assert link.is_displayed()
                driver.save_screenshot(str(shots / "test_start_resume.png"))
                link.click()
        done = driver.find_element(By.ID, "done")
        wait(driver, done.is_displayed, timeout=30)
        if number == 0:
            driver.save_screenshot(str(shots / "test_done.png"))
        return participant
    finally:
        driver.quit()


def test_two_participants_at_once_then_database_export_and_analysis(served):
    server, database, shots = served
    with ThreadPoolExecutor(max_workers=2) as pool:
        participants = list(
            pool.map(lambda number: take_test(server, database, shots, number), range(2))
        )
    assert len(set(participants)) == 2
    db = ListeningDB(database)
    for participant in participants:
        rows = db.query(
            "SELECT r.condition, r.rating FROM ratings r JOIN trials t USING "
            "(participant, position) WHERE r.participant = ? AND t.finished IS NOT NULL",
            (participant,),
        )
        assert len(rows) == 3 * 5  # 3 clips x (3 methods, anchor, hidden reference)
        assert all(rating == RULE[name] for name, rating in rows)
        choices = db.query("SELECT choice FROM preferences WHERE participant = ?", (participant,))
        assert choices == [("by_design",)] * 3
    with urllib.request.urlopen(f"{server.base}/export.csv?token={server.token}") as response:
        exported = list(csv.DictReader(io.StringIO(response.read().decode())))
    assert len(exported) == 2 * (15 + 3 * 2)
    assert {row["participant"] for row in exported} == set(participants)
    from selenium.webdriver.common.by import By

    driver = new_driver()
    try:
        driver.get(f"{server.base}/results?token={server.token}")
        means = {
            row.get_attribute("data-condition"): row.text.split()[-1]
            for row in driver.find_elements(By.CSS_SELECTOR, "#means tbody tr")
        }
        assert means == {name: f"{value:.1f}" for name, value in RULE.items()}
        driver.save_screenshot(str(shots / "results.png"))
        driver.get(f"{server.base}/results")
        driver.save_screenshot(str(shots / "results_without_token.png"))
        assert "token" in driver.find_element(By.TAG_NAME, "main").text
    finally:
        driver.quit()
    summary = analyse(database, Path(database).parent / "analysis")
    assert summary["kept"] == sorted(participants) and summary["excluded"] == []
    assert {row["condition"]: row["mean"] for row in summary["conditions"]} == RULE
    # every block ranks by_design > gradcam > energy > random: chi2 = n (k - 1) = 6 x 3
    assert summary["friedman"]["statistic"] == pytest.approx(18.0)
