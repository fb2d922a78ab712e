"""The HTML report in a real browser: every image loads and nothing logs an error."""

import shutil

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "headless Chromium not installed (Debian packages chromium and chromium-driver; "
            "`make test` installs them where apt is available)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def test_report_renders_in_chromium(planted_store, browser, tmp_path):
    from hypotune.report.build import build_report

    study, tracker, _ = planted_store
    report = build_report(study, "quick", tracker, tmp_path / "report")
    browser.get(report.html_path.resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0]);"
    )
    assert len(images) >= 5 and all(loaded for _, loaded in images), images
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    verdict_cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('td.supported, td.equivalent'))"
        ".map(cell => cell.textContent);"
    )
    assert "supported" in verdict_cells and "equivalent" in verdict_cells
    screenshot = tmp_path / "report.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_pareto_tick_labels_are_numbers_not_math_markup(planted_store, browser, tmp_path):
    """The Pareto plot's log axis, drawn as SVG with its text kept as text, read back in Chromium:
    every label a reader sees is plain (no `$` or `mathdefault` from unparsed math markup)."""
    import matplotlib

    from hypotune.report import figures
    from hypotune.report.build import collect

    study, tracker, _ = planted_store
    data = collect(study, "quick", tracker)
    view = figures.pareto_view(study, data)
    assert view is not None and view.size == "param_count"
    points = figures.pareto_data(study, data, view)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays <text>, as the browser shows it
        path = figures.render_pareto(
            points, tmp_path / "pareto.svg", "planted $5 study", view.size, view.metric
        )
    browser.get(path.resolve().as_uri())
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('text')).map(t => t.textContent);"
    )
    assert any(label.strip() for label in labels), labels
    shown = " ".join(labels)
    assert "mathdefault" not in shown and "\\" not in shown, labels
    assert "$" not in shown.replace("planted $5 study", ""), labels  # the title's own $ stays as typed
    assert "planted $5 study" in shown
