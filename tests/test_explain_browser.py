"""The drawing page's "why?" toggle in headless Chromium (Debian's package, driven by
Playwright): toggle on, draw, and a heatmap overlay and the feature maps appear; toggle off
and they go. The app is `create_app`, which adds `POST /explain` (`default_routers`)."""

from __future__ import annotations

import pytest
from playwright import sync_api

from support import CHROMIUM, CHROMIUM_ARGS, STROKES, browser_marks
from tfcnn.serve.app import BackgroundServer, create_app

pytestmark = browser_marks()


@pytest.fixture(scope="module")
def server():
    from tfcnn.models.network import build_model

    model = build_model("8C3-P2-8C3-D10", (28, 28, 1), tuple("0123456789"), seed=0,
                        prepare="mnist", dataset="mnist")
    with BackgroundServer(create_app(model, "digits")) as running:
        yield running


@pytest.fixture()
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 800, "height": 900}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        yield page
        browser.close()
        assert errors == []


def draw(page, digit: int) -> None:
    box = page.locator("#pad").bounding_box()
    left, top = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2
    for line in STROKES[digit][0]:
        points = [(left + x * box["width"] * 0.4, top + y * box["height"] * 0.6)
                  for x, y in line]
        page.mouse.move(*points[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            for step in range(1, 6):
                page.mouse.move(x0 + (x1 - x0) * step / 5, y0 + (y1 - y0) * step / 5)
        page.mouse.up()


def test_why_toggle_overlays_the_heatmap_and_shows_feature_maps(page, tmp_path):
    page.check("#why")
    draw(page, 7)
    heat = page.locator("#heat")
    sync_api.expect(heat).to_be_visible(timeout=15_000)
    size = heat.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [28, 28]
    # The overlay sits exactly on the 28×28 input it explains.
    seen, over = page.locator("#seen").bounding_box(), heat.bounding_box()
    assert (round(seen["x"]), round(seen["y"])) == (round(over["x"]), round(over["y"]))
    layers = page.locator("#maps figcaption").all_inner_texts()
    assert layers == ["conv1: 26×26×8", "conv2: 11×11×8"]
    assert page.locator("#top-label").inner_text() in "0123456789"
    page.screenshot(path=str(tmp_path / "why.png"), full_page=True)
    page.uncheck("#why")
    sync_api.expect(heat).to_be_hidden(timeout=15_000)
    sync_api.expect(page.locator("#maps")).to_be_hidden()


def test_heatmap_follows_the_drawing(page):
    page.check("#why")
    draw(page, 1)
    heat = page.locator("#heat")
    sync_api.expect(heat).to_be_visible(timeout=15_000)
    first = heat.get_attribute("src")
    draw(page, 7)
    sync_api.expect(heat).not_to_have_attribute("src", first, timeout=15_000)


def test_a_server_without_explain_turns_the_toggle_off():
    from tfcnn.models.network import build_model

    model = build_model("8C3-P2-D10", (28, 28, 1), tuple("0123456789"), seed=0,
                        prepare="mnist", dataset="mnist")
    # An app without the /explain router, as a server with other routes would be.
    with BackgroundServer(create_app(model, "digits", extra_routers=[])) as running, \
            sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 800, "height": 900}).new_page()
        page.goto(running.url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        page.check("#why")
        draw(page, 1)
        sync_api.expect(page.locator("#status")).to_contain_text("does not explain",
                                                                 timeout=15_000)
        assert not page.locator("#why").is_checked()
        assert page.locator("#heat").is_hidden()
        browser.close()
