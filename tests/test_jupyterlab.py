"""JupyterLab as a user meets it: notebook 06's selection explorer in a real (headless) browser.

Starts `jupyter lab` on 127.0.0.1 (token, free port, temporary root/settings/runtime folders so
nothing of the user's is read or written), opens notebook 06 prepared by papermill with
`profile=smoke, interactive=True` on the synthetic set notebook 01 makes, runs all cells in
Chromium (Debian's `chromium`, driven by Playwright through `executable_path`: no browser
download) and checks what the user sees. Every process it starts is stopped (its process group).

Needs: Debian's chromium (tests/run.sh installs it through scripts/install_browser.sh) and
playwright (the `test` extra); skips with the reason when either is missing.
`NAIRSTD_SCREENSHOTS=DIR` keeps screenshots of the page there.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
NOTEBOOK = REPO / "notebooks" / "06_ablations.ipynb"
FIRST_WIDGET_S = 240  # Run All -> explorer shown (smoke trains 8 tiny runs: ~20 s on 2 cores)
REDRAW_S = 60  # K changed -> new figure (the bound)


def chromium_executable() -> str:
    """Debian's chromium binary, else skip with the reason (and the installer's log line)."""
    for path in filter(None, (os.environ.get("NAIRSTD_CHROMIUM"), *CHROMIUM_PATHS)):
        if Path(path).is_file() and os.access(path, os.X_OK):
            return path
    log = Path(os.environ.get("NAIRSTD_BROWSER_LOG", "/tmp/nairstd-browser-install.log"))
    why = log.read_text().strip().splitlines()[-1:] if log.is_file() else []
    pytest.skip(
        "chromium not found at "
        + " or ".join(CHROMIUM_PATHS)
        + " (scripts/install_browser.sh installs it as root)"
        + (f": {why[0]}" if why else "")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True and everything it started."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab on a temporary root holding the prepared notebook 06, with the
    smoke synthetic set generated; yields (url of the notebook, root, log path)."""
    pytest.importorskip("playwright.sync_api", reason="playwright not installed (test extra)")
    import papermill

    base = tmp_path_factory.mktemp("lab")
    root, data, outputs, home = (base / n for n in ("root", "data", "outputs", "home"))
    for folder in (root, data, outputs, home):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NAIRSTD_DATA"))}
    env.update(
        NAIRSTD_GENERATED=str(data),
        NAIRSTD_OUTPUTS=str(outputs),
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        MPLCONFIGDIR=str(home / "mpl"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONPATH=str(REPO),
    )
    synth = [sys.executable, "-m", "nairstd", "data", "synth", "synthetic", "--profile", "smoke"]
    subprocess.run([*synth, "--out", str(data)], env=env, check=True, capture_output=True)
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(root / NOTEBOOK.name),
        parameters={"profile": "smoke", "interactive": True},
        prepare_only=True,
    )
    # No "official Jupyter news?" pop-up over the page.
    news = (
        home
        / "settings"
        / "@jupyterlab"
        / "apputils-extension"
        / "notification.jupyterlab-settings"
    )
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')
    port, token = free_port(), os.urandom(16).hex()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "jupyter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        status = f"http://127.0.0.1:{port}/api/status?token={token}"
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(status, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in 60 s: {log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}", root, log
    finally:
        stop_group(proc)


def shot(page, name: str, always: bool = False) -> None:
    """A screenshot into $NAIRSTD_SCREENSHOTS (on a failure: there or /tmp)."""
    folder = os.environ.get("NAIRSTD_SCREENSHOTS") or ("/tmp/nairstd-jupyterlab" if always else "")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def test_explorer_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, _root, log = lab
    executable = chromium_executable()
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            try:
                check_explorer(page, url, errors)
            except Exception:
                shot(page, "failure", always=True)
                print(f"jupyter log (tail):\n{log.read_text()[-3000:]}")
                raise
        finally:
            browser.close()


def check_explorer(page, url: str, errors: list[str]) -> None:
    """Open, Run All, check the explorer, change K, check the redraw (the issue's list)."""
    page.goto(url)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=60_000)
    # Run All before the kernel session is connected asks "Select Kernel": wait for it.
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    if page.locator(".jp-Dialog").count():
        page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    started = time.monotonic()

    explorer = page.locator(".jp-OutputArea-output .widget-vbox").last
    dropdown = page.locator(".jp-OutputArea-output .widget-dropdown")
    dropdown.first.wait_for(timeout=FIRST_WIDGET_S * 1000)
    figure = explorer.locator(".widget-output img")
    figure.first.wait_for(timeout=60_000)
    first_widget_s = time.monotonic() - started
    print(f"time to first widget (Run All -> figure shown): {first_widget_s:.1f} s")
    shot(page, "1-explorer")
    explorer.scroll_into_view_if_needed()
    shot(page, "2-explorer-scrolled")

    outputs = page.locator(".jp-NotebookPanel .jp-OutputArea").all_inner_texts()
    text = "\n".join(outputs)
    assert page.locator(".jp-OutputArea-output .widget-slider").count() == 3
    assert dropdown.count() == 1
    assert "Error displaying widget" not in text
    assert "VBox(" not in text
    assert "Warning:" not in text, "a raw warning is shown in a cell"
    assert figure.count() == 1
    summary = explorer.locator(".widget-html").inner_text()
    assert "coverage" in summary and "IoU" in summary

    before = figure.get_attribute("src")
    k_label = page.locator("label", has_text=re.compile(r"^K$"))
    k_readout = explorer.locator(".widget-slider", has=k_label).locator(".widget-readout")
    k_readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("12")
    page.keyboard.press("Enter")
    deadline = time.monotonic() + REDRAW_S
    while True:
        imgs = explorer.locator(".widget-output img")
        if imgs.count() == 1 and imgs.get_attribute("src") != before:
            break
        assert time.monotonic() < deadline, f"figure not redrawn {REDRAW_S} s after K=12"
        time.sleep(0.25)
    time.sleep(1.0)  # a late second image would show here
    shot(page, "3-k12")
    assert explorer.locator(".widget-output img").count() == 1
    assert "K = 12" in explorer.locator(".widget-html").inner_text()
    assert not errors, f"browser console errors: {errors}"
