"""The notebooks in a real JupyterLab driven by a real browser (Playwright + Debian's chromium).

JupyterLab serves a scratch folder on 127.0.0.1 that holds copies of the committed notebooks with only
their parameter values changed (a short run, its own results folder), so the kernel's working directory
is not the repository: the notebooks must find params/ and rlkit through the repository itself. Each
notebook is run with Run > Run All Cells, as a user would. `.ci/run` installs chromium with apt; the
Makefile's install puts Playwright's Python package in the venv (never a browser download).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the current tab (earlier tabs stay in the page)
TOKEN = "rlkit-browser-test"
pytestmark = pytest.mark.timeout(600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_parameters(src: Path, dst: Path, **values) -> None:
    """A copy of a committed notebook whose parameters cell sets `values` (papermill's rule: later lines win)."""
    nb = nbformat.read(src, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in values.items())
    nbformat.write(nb, dst)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on loopback serving a scratch folder; yields (base url, folder)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    from jupyter_client.kernelspec import KernelSpecManager
    assert "rlkit" in KernelSpecManager().find_kernel_specs(), "the rlkit kernel is not registered: run make install"
    work = tmp_path_factory.mktemp("lab")
    results = work / "results"
    with_parameters(ROOT / "notebooks" / "train.ipynb", work / "train.ipynb", run_dir=str(results / "cartpole" / "seed0"),
                    overrides={"total_steps": 6144, "eval.every": 2048, "eval.episodes": 2, "log_every": 512})
    with_parameters(ROOT / "notebooks" / "report.ipynb", work / "report.ipynb", results_dir=str(results))
    with_parameters(ROOT / "notebooks" / "train.ipynb", work / "long.ipynb", run_dir=str(work / "long" / "seed0"),
                    config="params/mountaincar.yaml", overrides={"total_steps": 2_000_000, "log_every": 512})
    port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / ".config"), "JUPYTER_RUNTIME_DIR": str(work / ".runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(work / ".settings"), "JUPYTERLAB_WORKSPACES_DIR": str(work / ".workspaces")}
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={work}",
                             "--LabApp.news_url=", "--ServerApp.open_browser=False", "--allow-root"],  # CI runs as root
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start:\n{(work / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
    try:
        yield url, work
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def run_all(page, url: str, notebook: str, timeout_s: float = 240) -> None:
    """Open the notebook, wait for its kernel, Run > Run All Cells, wait until every cell has run, save."""
    page.goto(f"{url}/lab/tree/{notebook}?token={TOKEN}")
    page.wait_for_selector(f"{PANEL} .jp-CodeCell", timeout=90_000)
    time.sleep(2.0)
    accept_dialogs(page)
    page.wait_for_selector(f"{PANEL} .jp-Toolbar-kernelName:has-text('Python (rlkit)')", timeout=90_000)
    prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt")
    t0 = time.monotonic()
    clicks = 0
    # A click that lands while the new kernel is still connecting runs nothing (every prompt stays "[ ]:", nothing
    # is queued), so clicking again cannot run a cell twice. On a loaded 2-core machine connecting took > 60 s.
    while time.monotonic() - t0 < 180:
        page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        accept_dialogs(page)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        clicks += 1
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and prompts.first.text_content().strip() in ("[ ]:", ""):
            time.sleep(0.25)
        if prompts.first.text_content().strip() not in ("[ ]:", ""):
            break
    deadline = time.monotonic() + timeout_s
    stalled = None
    while True:  # every code cell shows an execution count "[n]:", none the busy "[*]:"
        # textContent, not innerText: Lab leaves cells far outside the view unrendered (content-visibility), and
        # innerText reads an unrendered prompt as "" however long it has shown its count
        texts = [t.strip() for t in prompts.all_text_contents()]
        if texts and all(t.startswith("[") and t[1:-2].isdigit() for t in texts):
            break
        assert time.monotonic() < deadline, f"{notebook}: cells did not finish: {texts}"
        # a kernel that (re)connected while Run All was queued drops the queue: nothing busy, cells left unrun.
        # Run All again (the notebooks are idempotent: a finished run is shown, a report rewritten)
        if "[*]:" not in texts and "[ ]:" in texts:
            stalled = stalled or time.monotonic()
            if time.monotonic() - stalled > 10 and clicks < 6:
                accept_dialogs(page)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
                clicks, stalled = clicks + 1, None
        else:
            stalled = None
        time.sleep(0.5)
    print(f"{notebook}: Run All took {time.monotonic() - t0:.1f} s ({clicks} click(s))")
    page.keyboard.press("Control+s")
    time.sleep(1.5)


def accept_dialogs(page) -> None:
    """Lab may open a modal of its own when a notebook opens (a kernel to select, a file changed on disk, a
    workspace restored with the earlier tab); it would take the clicks meant for the menu. Say what it was
    and take its default button, as a user pressing Enter would."""
    for _ in range(5):
        dialog = page.locator(".jp-Dialog")
        if dialog.count() == 0:
            return
        print("JupyterLab dialog:", " ".join(dialog.first.inner_text().split())[:200])
        kernels = dialog.first.locator("select")
        if kernels.count():  # a kernel to select: the kit's, which the notebook names
            kernels.first.select_option(label="Python (rlkit)")
        accept = dialog.first.locator(".jp-mod-accept")
        if accept.count():
            accept.first.click()
        else:
            page.keyboard.press("Escape")
        time.sleep(1.0)


def errors_in(page) -> list[str]:
    """Error and warning outputs (stderr is rendered with this mime type; a clean run writes none)."""
    return page.locator(f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()


def saved_errors(path: Path) -> list:
    nb = json.loads(path.read_text())
    return [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]


def test_train_and_report_notebooks_run_all_in_jupyterlab(lab, browser):
    url, work = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("dialog", lambda d: d.dismiss())

    run_all(page, url, "train.ipynb")
    training = page.locator(f"{PANEL} .jp-CodeCell").nth(1)  # the cell after the parameters
    assert training.locator(".widget-progress, .progress-bar, progress").count() >= 1, "no progress bar"
    assert training.locator("img[src^='data:image/png']").count() == 1, "no live plot"
    bar = training.inner_text().replace("\u2007", " ")  # tqdm's widget pads with figure spaces
    assert "steps/s" in bar and "it/s" not in bar and "step/s]" not in bar, bar  # one speed: rlkit's
    assert " 0 steps/s" not in bar, bar  # the last row has no speed of its own, not a speed of 0
    assert "return" in bar and "(last " in bar  # the smoothed return, not one episode's
    summary = page.locator(f"{PANEL} .jp-CodeCell").nth(2)  # show_run: the summary; the live plot was the curves
    assert summary.locator("img[src^='data:image/png']").count() == 0 and "finished" in summary.inner_text()
    assert "s (the training loop)" in summary.inner_text()  # units on the numbers
    assert page.locator(f"{PANEL} details summary", has_text="full resolved config").count() == 1
    assert errors_in(page) == [] and saved_errors(work / "train.ipynb") == []
    assert json.loads((work / "results" / "cartpole" / "seed0" / "status.json").read_text())["state"] == "finished"

    # Run All again on the finished run: it is shown, not trained again, and nothing fails
    run_all(page, url, "train.ipynb")
    assert "holds a finished run: showing it" in page.locator(f"{PANEL} .jp-CodeCell").nth(1).inner_text()
    assert page.locator(f"{PANEL} .jp-CodeCell").nth(2).locator("img[src^='data:image/png']").count() == 1
    assert errors_in(page) == [] and saved_errors(work / "train.ipynb") == []

    page.close()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # a fresh page: no dialog of the last one
    page.on("dialog", lambda d: d.accept())  # leaving a page: yes
    run_all(page, url, "report.ipynb")
    figures = page.locator(f"{PANEL} .jp-OutputArea-output img[src^='data:image/png']")
    assert figures.count() >= 2, "report figures missing"
    assert page.locator(f"{PANEL} .js-plotly-plot").count() >= 1, "no interactive comparison"
    assert page.locator(f"{PANEL} table").count() >= 2  # headline and runs
    assert errors_in(page) == [] and saved_errors(work / "report.ipynb") == []
    # the headline's score column is visible without scrolling sideways in a 1,400 px window
    score = page.locator(f"{PANEL} table.rlkit-headline th", has_text="final IQM").first
    score.scroll_into_view_if_needed()
    box, column = score.bounding_box(), page.locator(f"{PANEL} .jp-WindowedPanel-outer, {PANEL} .jp-Notebook").first
    assert box["x"] + box["width"] <= column.bounding_box()["x"] + column.bounding_box()["width"], (box, column.bounding_box())
    cell = page.locator(f"{PANEL} table.rlkit-headline").first
    assert cell.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth + 1"), "the headline table overflows"

    page.close()
    # a page of its own: leaving Lab with a notebook not yet autosaved asks "leave site?", which would abort it
    report = browser.new_page()
    report.goto((work / "results" / "report" / "index.html").as_uri())
    images = report.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
    assert len(images) >= 2 and all(ok for _, ok in images), images
    assert report.locator(".js-plotly-plot").count() >= 1  # interactive without a kernel: plotly.min.js beside it
    report.close()


def test_kernel_interrupt_is_one_line_and_run_all_resumes(lab, browser):
    """Kernel > Interrupt during training: no traceback, one line saying where it stopped and where Run All
    resumes from."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    url, work = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("dialog", lambda d: d.dismiss())
    page.goto(f"{url}/lab/tree/long.ipynb?token={TOKEN}")
    page.wait_for_selector(f"{PANEL} .jp-CodeCell", timeout=90_000)
    time.sleep(2.0)
    accept_dialogs(page)
    page.wait_for_selector(f"{PANEL} .jp-Toolbar-kernelName:has-text('Python (rlkit)')", timeout=90_000)
    page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    training = page.locator(f"{PANEL} .jp-CodeCell").nth(1)
    prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt")
    deadline = time.monotonic() + 180
    while prompts.first.text_content().strip() in ("[ ]:", ""):  # a click while the kernel connects runs nothing
        assert time.monotonic() < deadline, "Run All never started"
        accept_dialogs(page)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        wait = time.monotonic() + 30  # give the click time to show before taking it for lost
        while time.monotonic() < wait and prompts.first.text_content().strip() in ("[ ]:", ""):
            time.sleep(0.5)
    while "steps/s" not in training.inner_text():  # the bar has moved: training is under way
        assert time.monotonic() < deadline, f"training never started: {training.inner_text()[-500:]}"
        time.sleep(1)
    time.sleep(3.0)
    # A Run All clicked while the kernel was still connecting can be queued twice: the interrupt then stops the
    # first execution and the queued one starts training again (clearing the line). Interrupt until it holds.
    for _ in range(3):
        page.get_by_role("menuitem", name="Kernel", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Interrupt Kernel")).click()  # its name ends with the shortcut
        try:
            page.wait_for_function("() => document.body.innerText.includes('stopped at policy step')", timeout=40_000)
            break
        except PlaywrightTimeout:
            continue
    else:
        raise AssertionError(f"no 'stopped at policy step' line after 3 interrupts: {training.inner_text()[-500:]}")
    page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    text = training.inner_text()
    assert "Run All resumes from the checkpoint at policy step" in text or "Run All resumes from the start" in text
    assert "Traceback" not in page.locator(f"{PANEL}").inner_text() and "KeyboardInterrupt" not in text
    assert page.locator(f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count() == 0
    status = json.loads((work / "long" / "seed0" / "status.json").read_text())
    assert status["state"] == "failed" and "Run All resumes it" in status["error"]
    page.close()
