"""The web page in a real headless Chromium against the demo rig, used as a person would use it.

Debian's ``chromium`` runs the page, driven through Playwright's own driver (from PyPI; no
browser is downloaded). Without Chromium the module is skipped, unless ``ZIDL_REQUIRE_BROWSER``
is set (``.ci/run`` sets it), which makes a missing browser a failure.
``ZIDL_WEB_SCREENSHOT=docs/web.png`` also writes the README's screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("ZIDL_REQUIRE_BROWSER"):
        pytest.fail("ZIDL_REQUIRE_BROWSER is set but there is no chromium: apt-get install -y chromium", pytrace=False)
    pytest.skip(
        "no chromium on this machine (apt-get install chromium runs the browser tests)", allow_module_level=True
    )

from playwright.sync_api import BrowserContext, Locator, Page, expect, sync_playwright  # noqa: E402

sys.path.insert(0, str(ROOT / "examples"))
from demo import Rig, free_port  # noqa: E402
from dummy_cnc import DummyCnc  # noqa: E402

from runtime import Client  # noqa: E402

pytestmark = pytest.mark.slow

expect.set_options(timeout=20_000)  # a busy 2-core machine runs the rig, the view and Chromium at once

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    registry = f"tcp://127.0.0.1:{free_port()}"
    with Rig(registry, camera_options=["--resolution", "320x240"], web=f"127.0.0.1:{free_port()}") as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(rig: Rig, browser: BrowserContext) -> Iterator[Page]:
    opened = browser.new_page()
    opened.goto(rig.web_url)
    for name in ("cam1", "cam2", "stage", "controller"):
        expect(device(opened, name).locator("details[data-method]").first).to_be_attached()
    yield opened
    opened.close()


def device(page: Page, name: str) -> Locator:
    return page.locator(f'section[data-device="{name}"]')


def method(page: Page, name: str, method_name: str) -> Locator:
    form = device(page, name).locator(f'details[data-method="{method_name}"]')
    if form.get_attribute("open") is None:
        form.locator("summary").click()
    return form


def call(page: Page, name: str, method_name: str, /, **args: str) -> Locator:
    """Fill a method's form and press its button; the form back, to read its result from."""
    form = method(page, name, method_name)
    for arg, value in args.items():
        form.locator(f'[name="{arg}"]').fill(value)
    form.get_by_role("button", name="Call").or_(form.get_by_role("button", name="Start")).click()
    return form


def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Whether ``condition`` holds within ``timeout`` (looked at every 50 ms: a file another process writes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_page_lists_both_cameras_the_stage_and_the_controller(page: Page) -> None:
    names = page.locator("section[data-device] h2").all_inner_texts()
    assert sorted(names) == ["cam1", "cam2", "controller", "stage"]
    expect(device(page, "cam1").locator(".kind")).to_contain_text("Camera v1")


def test_a_device_appears_on_the_page_as_it_registers_and_goes_as_it_stops(rig: Rig, page: Page) -> None:
    with DummyCnc().running("tcp://127.0.0.1:0", registry=rig.registry, name="extra-stage"):
        expect(device(page, "extra-stage").locator('details[data-method="moveto"]')).to_be_attached()
    expect(device(page, "extra-stage")).to_have_count(0)


def test_setting_the_encoding_on_the_page_changes_the_camera(rig: Rig, page: Page) -> None:
    with Client.lookup("cam1", registry=rig.registry) as camera:
        camera.set("encoding", "jpeg")
        row = device(page, "cam1").locator('tr[data-property="encoding"]')
        expect(row.locator(".value")).to_have_text("jpeg")
        row.locator("select").select_option("png")
        row.get_by_role("button", name="Set").click()
        expect(row.locator(".value")).to_have_text("png")
        assert camera.get("encoding").value == "png"
        camera.set("encoding", "jpeg")
        expect(row.locator(".value")).to_have_text("jpeg")  # and a change made elsewhere shows live


def test_a_value_the_camera_refuses_shows_its_reason_and_changes_nothing(rig: Rig, page: Page) -> None:
    with Client.lookup("cam1", registry=rig.registry) as camera:
        before = camera.get("resolution")
        row = device(page, "cam1").locator('tr[data-property="resolution"]')
        row.locator("textarea").fill("[1, 1]")
        row.get_by_role("button", name="Set").click()
        expect(row.locator(".error")).to_contain_text("resolution 1x1 is outside 16x16 to 8192x8192")
        assert camera.get("resolution") == before
        expect(row.locator(".value")).to_have_text(json.dumps(list(before), separators=(",", ":")))


def test_a_captured_image_appears_as_an_image(page: Page) -> None:
    form = call(page, "cam1", "get_image")
    image = form.locator(".result img")
    expect(image).to_be_visible()
    assert image.get_attribute("src", timeout=5_000).startswith("data:image/")  # type: ignore[union-attr]
    assert image.evaluate("img => img.complete && img.naturalWidth") == 320


def test_the_preview_plays(page: Page) -> None:
    form = call(page, "cam2", "preview", fps="10")
    frame = form.locator('.result img[alt="stream"]')
    expect(frame).to_be_visible()
    first = frame.get_attribute("src")
    expect(frame).not_to_have_attribute("src", first or "")  # a newer frame replaced it
    expect(form.locator(".frames")).not_to_have_text("1 item")
    form.get_by_role("button", name="Cancel").click()
    expect(form.locator(".stream-status")).to_have_text("cancelled")


def prepare_scan(page: Page, root: Path, dataset: str, positions: int) -> None:
    for method_name, args in (
        ("set_db_url", {"url": str(root)}),
        ("set_dataset_name", {"name": dataset}),
        ("set_config", {"config": json.dumps({"positions": positions})}),
    ):
        form = call(page, "controller", method_name, **args)
        expect(form.locator(".result")).to_have_text("done")
        form.locator(".result").evaluate("node => node.replaceChildren()")


def test_a_scan_started_on_the_page_moves_its_progress_to_the_end(page: Page, tmp_path: Path) -> None:
    call(page, "cam1", "get_image")
    call(page, "cam2", "preview", fps="5")
    prepare_scan(page, tmp_path, "from-the-page", positions=4)
    scan = call(page, "controller", "run_scan")
    expect(scan.locator(".stream-status")).to_have_text("finished")
    progress = scan.locator("progress")
    assert (progress.evaluate("bar => [bar.value, bar.max]")) == [4, 4]
    expect(scan.locator(".result")).to_contain_text("images")
    assert json.loads((tmp_path / "from-the-page" / "scan.json").read_text())["complete"] is True
    expect(device(page, "controller").locator('tr[data-property="progress"] .value')).to_have_text("4")
    screenshot = os.environ.get("ZIDL_WEB_SCREENSHOT")
    page.screenshot(path=str(ROOT / screenshot) if screenshot else str(tmp_path / "web.png"), full_page=True)


POSITIONS = 120
"""Of the scan to cancel: moves of 6 mm, a capture between them; many seconds from end to end."""


def quiet(moved: threading.Event, seconds: float, *, within: float) -> bool:
    """Whether ``moved`` stays clear for ``seconds`` at a stretch before ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        moved.clear()
        if not moved.wait(seconds):
            return True
    return False


def test_a_scan_cancelled_on_the_page_stops_the_stage(rig: Rig, page: Page, tmp_path: Path) -> None:
    prepare_scan(page, tmp_path, "cancelled", positions=POSITIONS)
    moved = threading.Event()
    with Client.lookup("stage", registry=rig.registry) as stage:
        stage.signal("positionChanged").connect(lambda *position: moved.set())
        scan = call(page, "controller", "run_scan")
        bar = scan.locator("progress").element_handle()
        page.wait_for_function("bar => !bar.hidden && bar.value >= 1", arg=bar)
        scan.get_by_role("button", name="Cancel").click()
        expect(scan.locator(".stream-status")).to_have_text("cancelled")
        record = tmp_path / "cancelled" / "scan.json"
        assert eventually(record.exists), "the controller did not record the cancelled scan"
        recorded = json.loads(record.read_text())
        assert recorded["complete"] is False and recorded["positions_done"] < POSITIONS
        assert quiet(moved, 0.5, within=10.0), "the stage still moves after the scan was cancelled"
        here = stage.call("get_position")
        assert not moved.wait(0.5)
        assert stage.call("get_position") == here


def test_the_page_fits_a_phone(rig: Rig, browser: BrowserContext) -> None:
    phone = browser.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    try:
        phone.goto(rig.web_url)
        expect(device(phone, "cam1").locator('tr[data-property="encoding"] select')).to_be_visible()
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        phone.close()
