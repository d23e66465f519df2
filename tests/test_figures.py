"""The reports' figures as a browser lays them out (headless Chromium): tick labels do not overlap, legends sit beside
the plot area, never over a line. Screenshots are kept with the test's files."""

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import MeanRedClassifier, write_red_folder

LAYOUT = """
const out = [];
for (const svg of document.querySelectorAll('svg')) {
  const frame = [...svg.querySelectorAll('rect')].find(r => r.getAttribute('fill') === 'none');
  if (!frame) continue;
  const plot = frame.getBoundingClientRect();
  const ticks = [...svg.querySelectorAll('text')].filter(t => t.getBoundingClientRect().top > plot.bottom - 1
                                                         && t.getBoundingClientRect().top < plot.bottom + 30);
  const legend = [...svg.querySelectorAll('rect')].filter(r => r.getAttribute('width') === '14');
  out.push({plot: [plot.left, plot.top, plot.right, plot.bottom],
            ticks: ticks.map(t => { const b = t.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; }),
            legend: legend.map(r => { const b = r.getBoundingClientRect();
                                      return [b.left, b.top, b.right, b.bottom]; })});
}
return out;
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chrome')}",
    ):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_window_size(1200, 1600)
    yield driver
    driver.quit()


def overlap(a, b) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def check_layout(browser, page, screenshot, expected_figures: int) -> None:
    browser.get(page.as_uri())
    browser.save_screenshot(str(screenshot))
    figures = browser.execute_script(LAYOUT)
    assert len(figures) == expected_figures
    for fig in figures:
        ticks = fig["ticks"]
        assert all(not overlap(a, b) for i, a in enumerate(ticks) for b in ticks[i + 1 :]), ticks
        assert fig["legend"] and all(box[0] >= fig["plot"][2] for box in fig["legend"])  # beside the plot, not on it


def test_evaluation_report_figures(browser, tmp_path):
    from imagesafety.bench.evaluate import evaluate

    data = write_red_folder(tmp_path / "data", n_per_label=20)
    result = evaluate(MeanRedClassifier(), data, tmp_path / "out", n_boot=50, progress=False, cache=None)
    check_layout(browser, result.files["html"], tmp_path / "report.png", expected_figures=3)  # bars, ROC, PR


def test_eps_curve_and_efficiency_figures(browser, tmp_path):
    from imagesafety.bench.robustness.report import eps_curve_plot
    from imagesafety.guard.efficiency import write_efficiency_report

    eps = [0.001 * 1.6**i for i in range(12)]  # crowded labels on a log axis
    curve = eps_curve_plot(
        {"pgd": {f"{e:.6g}": min(1.0, e * 20) for e in eps}, "fgsm": {f"{e:.6g}": e * 5 for e in eps}}
    )
    (tmp_path / "eps.html").write_text(f"<!doctype html><html><body>{curve}</body></html>")
    check_layout(browser, tmp_path / "eps.html", tmp_path / "eps.png", expected_figures=1)
    rng = np.random.default_rng(0)
    runs = pd.DataFrame(
        [
            {"size": n, "with_pairs": p, "seed": s, "f1": rng.random(), "auroc": rng.random()}
            for n in (16, 32, 64, 128, 256, 512, 1024)
            for p in (False, True)
            for s in range(3)
        ]
    )
    files = write_efficiency_report(runs, tmp_path / "eff")
    check_layout(browser, files["html"], tmp_path / "efficiency.png", expected_figures=1)
