"""Helpers for the real-browser test: a JupyterLab server on loopback and Debian's Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """Debian's chromium (installed by .ci/run with apt); Playwright cannot download browsers here."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root: Path, log: Path) -> Iterator[str]:
    """Start JupyterLab on 127.0.0.1 with no token; yield its base URL."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.token=",
        "--ServerApp.password=", f"--ServerApp.root_dir={root}",
        "--ServerApp.disable_check_xsrf=True", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/status", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError(f"JupyterLab did not start; see {log}") from None
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def add_and_run_cell(page, source: str, timeout_s: float = 300) -> str:
    """Append a code cell with ``source`` to the open notebook, run it, wait for the kernel, return its text output."""
    page.evaluate(
        "async (src) => { const app = window.jupyterapp; const nb = app.shell.currentWidget.content;"
        " nb.activeCellIndex = nb.widgets.length - 1;"
        " await app.commands.execute('notebook:insert-cell-below');"
        " nb.activeCell.model.sharedModel.setSource(src);"
        " await app.commands.execute('notebook:run-cell'); }",
        source,
    )
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget; const c = w.content.widgets.at(-1);"
        " return c.model.executionCount !== null && w.sessionContext.session.kernel.status === 'idle'; }",
        timeout=int(timeout_s * 1000),
    )
    return page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets.at(-1).node"
        ".querySelector('.jp-OutputArea')?.innerText ?? ''"
    )


#: JavaScript: the first error output (``output_type == "error"``) of the open notebook, as text, or null.
_FIRST_ERROR = (
    "(() => { const w = window.jupyterapp.shell.currentWidget;"
    " for (const c of w.content.widgets) { if (c.model.type !== 'code') continue;"
    "   for (const o of c.model.outputs.toJSON()) { if (o.output_type === 'error')"
    "     return `${o.ename}: ${o.evalue}\\n` + c.model.sharedModel.getSource(); } }"
    " return null; })()"
)


def run_all_cells(page, timeout_s: float = 600) -> None:
    """Run every cell of the open notebook and wait (on kernel and cell state, generous deadline) until all ran."""
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=300_000)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook", timeout=300_000)
    # Wait for the kernel to be ready before running.
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.status === 'idle'; }",
        timeout=300_000,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # Done when every code cell ran and the kernel is idle; or as soon as a cell shows an error
    # (JupyterLab then stops the run, and the rest would never get an execution count).
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        f" if ({_FIRST_ERROR} !== null) return true;"
        " const cells = w.content.widgets.filter(c => c.model.type === 'code');"
        " const done = cells.every(c => c.model.executionCount !== null"
        "   && !c.node.querySelector('.jp-InputArea-prompt')?.textContent.includes('*'));"
        " return done && w.sessionContext.session.kernel.status === 'idle'; }",
        timeout=int(timeout_s * 1000),
    )
    error = page.evaluate(f"() => {_FIRST_ERROR}")
    if error is not None:
        raise AssertionError(f"a notebook cell failed in JupyterLab: {error[:3000]}")
