"""`sparkad report`: one self-contained HTML page, checked in headless Chromium (rendered, no broken
image, the sections a user looks for are there), plus the monitor folder it can include."""
import json
import shutil
import subprocess

import pytest

from sparkad.score.run import run_analysis
from sparkad.core.errors import SparkadError
from sparkad.report.html import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def scored(spark, generated_hlf, trained_ae, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    run_analysis(generated_hlf, trained_ae, out / "scored", engine="spark", spark=spark, fraction=0.02,
                 background=["wjets", "dyjets"])
    r = subprocess.run(["sparkad", "monitor", "--scores", str(out / "scored"), "--out", str(out / "mon")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_report_renders_in_headless_chromium(scored, tmp_path):
    r = subprocess.run(["sparkad", "report", "--scores", str(scored / "scored"), "--monitor", str(scored / "mon"),
                        "--out", str(tmp_path / "r.html")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    page = tmp_path / "r.html"
    text = page.read_text()
    for heading in ("Anomaly selection", "Run-period check", "Operations monitoring", "ASTF", "Post-processing selection",
                    "Provenance"):
        assert heading in text
    assert "file://" not in text and "src=\"plots/" not in text  # self-contained: opens offline, can be mailed
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (CI installs Debian's chromium in .ci/run)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.goto(page.as_uri())
            tab.wait_for_load_state("load")
            info = tab.evaluate("""() => ({
                images: document.images.length,
                broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
                sections: Array.from(document.querySelectorAll('section h2')).map(h => h.textContent)})""")
            tab.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert info["images"] >= 6 and info["broken"] == [], info
    assert "Provenance" in info["sections"]
    assert (tmp_path / "report.png").stat().st_size > 50_000  # a rendered page, not a blank one


def test_report_refuses_incomplete_scores(tmp_path, scored):
    with pytest.raises(SparkadError, match="no complete _score_report.json"):
        write_report(tmp_path, tmp_path / "x.html")
    bad = tmp_path / "copy"
    shutil.copytree(scored / "scored", bad, ignore=shutil.ignore_patterns("scores"))
    rep = json.loads((bad / "_score_report.json").read_text())
    rep["complete"] = False
    (bad / "_score_report.json").write_text(json.dumps(rep))
    r = subprocess.run(["sparkad", "report", "--scores", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "no complete _score_report.json" in r.stderr and "Traceback" not in r.stderr
    assert not (bad / "report.html").exists()
