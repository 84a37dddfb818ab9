"""Videos play in the real browser the suite drives (Playwright + Debian's chromium): the report's index.html
shows each experiment's final policy playing, and train.ipynb's inline video (embedded in the notebook) plays.
Both must load (readyState reaches HAVE_ENOUGH_DATA), have a duration and advance when played."""
from pathlib import Path

import imageio.v3 as iio
import pytest

import rlkit
from conftest import TINY

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.timeout(300)

PLAY = """async (selector) => {
    const v = document.querySelector(selector);
    if (v.readyState < 4) await new Promise((ok, fail) => {
        v.addEventListener('canplaythrough', ok, {once: true}); v.addEventListener('error', () => fail(v.error.code));
        v.load();
    });
    v.muted = true;
    await v.play();
    await new Promise(ok => setTimeout(ok, 600));
    return {readyState: v.readyState, duration: v.duration, currentTime: v.currentTime, error: v.error && v.error.code,
            width: v.videoWidth};
}"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu",
                                                                                 "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    results = tmp_path_factory.mktemp("videos") / "results"
    rlkit.train("params/cartpole.yaml", results / "cartpole" / "seed0", progress=False,
                overrides={**TINY, "eval.video_every": 256})
    return results


def played(page, selector="video") -> dict:
    state = page.evaluate(PLAY, selector)
    assert state["error"] is None, state
    assert state["readyState"] >= 4 and state["duration"] > 0 and state["width"] > 0, state
    assert state["currentTime"] > 0, f"the video did not advance when played: {state}"
    return state


def test_the_reports_video_loads_and_plays(results, browser):
    from rlkit.analysis.report import write_report

    index = write_report(results)
    page = browser.new_page()
    page.goto(index.as_uri())
    assert page.locator("video").count() == 1  # one experiment: its final policy
    assert "policy step 512" in page.locator("figcaption").inner_text()
    state = played(page)
    frames = len(iio.imread(results / "cartpole" / "seed0" / "videos" / "512.mp4"))
    assert state["duration"] == pytest.approx(frames / 50, abs=0.05)  # every frame, at CartPole's 50 fps
    page.close()


def test_the_notebooks_inline_video_loads_and_plays(results, browser, tmp_path):
    from rlkit.experiments.notebook import latest_video

    video = latest_video(results / "cartpole" / "seed0")
    assert "data:video/mp4;base64," in video._repr_html_()  # embedded: the executed notebook carries it
    page_file = tmp_path / "cell.html"
    page_file.write_text(f"<!doctype html><html><body>{video._repr_html_()}</body></html>")
    page = browser.new_page()
    page.goto(page_file.as_uri())
    played(page)
    page.close()
