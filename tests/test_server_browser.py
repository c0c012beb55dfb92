"""The page in a real headless Chromium (Debian's chromium driven by Playwright): load it, fill the form, submit,
watch the progress and previews, play the result, take a screenshot. The README's picture, docs/server_page.png, is
this screenshot: `VDGRAPH_UPDATE_SCREENSHOT=1 pytest tests/test_server_browser.py` rewrites it."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from server_fixtures import REPO, ServerProcess

CHROMIUM = os.environ.get("VDGRAPH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                                                                   "(pip install playwright; `make test` does)")
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package (`make browser`, as root, or apt-get "
                "install chromium), or point VDGRAPH_CHROMIUM at one", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    process = ServerProcess(root / "out", "--preview-every", "1")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def page(server):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        yield page
        browser.close()


def test_the_page_runs_a_job_shows_progress_and_previews_and_plays_the_video(server, page, tmp_path):
    page.goto(server.url + "/")
    page.wait_for_selector("#workflow option[value=text2video_zero]", state="attached")
    page.select_option("#workflow", "text2video_zero")
    # the form is generated from the workflow's declared inputs: a choice is a select, a number has its range
    assert page.locator("#input-sampler").evaluate("e => e.tagName") == "SELECT"
    assert page.locator("#input-frames").get_attribute("max") == "64"
    page.fill("#input-prompt", "a yellow triangle on a green background")
    for name, value in {"steps": 6, "t0": 2, "t1": 3, "frames": 4}.items():
        page.fill(f"#input-{name}", str(value))
    page.click("#submit")

    page.wait_for_selector(".bar[data-node=final]", timeout=60_000)  # per-node progress bars with step counts
    page.wait_for_selector("#preview-box:not([hidden])", timeout=60_000)  # a live preview arrived
    assert page.locator("#preview").get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_selector("#job-state.done", timeout=90_000)
    shipped = json.loads((REPO / "workflows" / "text2video_zero.json").read_text())
    assert page.locator("#graph .node").count() == len(shipped["nodes"])  # the DAG as SVG, nodes coloured by state
    assert page.locator("#graph .node.done").count() == len(shipped["nodes"])
    assert page.locator(".bar[data-node=final] .count").inner_text() == "4 / 4"  # steps 6, t1 3: 4 final steps

    page.wait_for_selector("#results:not([hidden]) video", timeout=30_000)
    page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=30_000)
    assert page.evaluate("document.getElementById('video').duration") == pytest.approx(0.5, abs=0.05)  # 4 at 8 fps
    # it plays: from the start, without looping (a looping 0.5 s clip would wrap around), time advances
    page.evaluate("(() => { const v = document.getElementById('video'); v.loop = false; v.currentTime = 0; "
                  "return v.play(); })()")
    page.wait_for_function("document.getElementById('video').currentTime > 0.2", timeout=15_000)
    assert page.evaluate("document.getElementById('video').played.length") >= 1
    page.wait_for_function("document.getElementById('sheet').naturalWidth > 0", timeout=15_000)
    assert page.locator("#history tbody tr").count() >= 1
    assert page.locator("#history tbody tr .state.done").count() >= 1
    page.evaluate("window.scrollTo(0, 0); document.getElementById('fields').scrollTop = 0")
    page.wait_for_timeout(300)
    shot = page.screenshot(path=str(tmp_path / "server_page.png"))
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("VDGRAPH_UPDATE_SCREENSHOT") == "1":  # the README's picture; not on every run (it would
        (REPO / "docs" / "server_page.png").write_bytes(shot)  # leave the checkout changed after each `make test`)
    assert page.errors == []


def test_the_page_shows_every_problem_of_an_invalid_job(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#workflow option[value=text2video_zero]", state="attached")
    page.select_option("#workflow", "text2video_zero")
    page.fill("#input-steps", "4")
    page.fill("#input-t1", "9")  # t1 must be below steps
    page.fill("#input-output", "../escape.mp4")
    page.click("#submit")
    page.wait_for_selector("#problems:not([hidden]) li")
    text = page.locator("#problems").inner_text()
    assert "../escape.mp4" in text or "output" in text
    assert page.locator("#problems li").count() >= 2
    assert page.errors == []


def test_the_page_sends_a_seed_beyond_2_to_the_53_exactly(server, page):
    # a JavaScript number would round 2**64 - 1 up to 2**64, which the server refuses as out of range
    page.goto(server.url + "/")
    page.wait_for_selector("#workflow option[value=text2video_zero]", state="attached")
    page.select_option("#workflow", "text2video_zero")
    label = page.locator("label[for=input-seed]").inner_text()
    assert str(2**64 - 1) in label  # the declared maximum, read exactly from /api/workflows
    page.fill("#input-seed", str(2**64 - 1))
    page.fill("#input-steps", "4")
    page.fill("#input-t1", "9")  # invalid on purpose: the job is refused at validation, nothing runs
    with page.expect_request(lambda r: r.url.endswith("/api/jobs") and r.method == "POST") as request:
        page.click("#submit")
    body = json.loads(request.value.post_data)
    assert body["inputs"]["seed"] == 2**64 - 1 and body["inputs"]["steps"] == 4
    page.wait_for_selector("#problems:not([hidden]) li")
    text = page.locator("#problems").inner_text()
    assert "seed" not in text  # only t1 is wrong
    assert page.errors == []
