"""The drawing page end to end in headless Chromium (Debian's package, driven by Playwright;
no browser download): draw a "1" with the mouse and a "7" with a pen, upload a "4", and see
each read by the trained network; a screenshot is saved in the test's temp dir."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from playwright import sync_api

from support import CHROMIUM, CHROMIUM_ARGS, STROKES, browser_marks, draw_digit
from tfcnn.serve.app import BackgroundServer, create_app

pytestmark = browser_marks()


@pytest.fixture(scope="module")
def server(trained_mnist_run):
    from tfcnn.models.network import load_model

    app = create_app(load_model(trained_mnist_run / "model.keras"), "mnist")
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 800, "height": 640})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Chromium logs each 4xx answer as a console error; the upload test asks for one.
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
            and "Failed to load resource" not in msg.text else None)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) or r.url.startswith(
        ("data:", "blob:")) else outside.append(r.url))
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    yield page
    context.close()
    assert errors == [] and outside == []


def stroke_points(digit: int, box: dict) -> list[list[tuple[float, float]]]:
    """support.STROKES's polylines for `digit`, in page coordinates on the canvas, as a
    person would draw it: about 60% of the pad's height, in its middle."""
    size_x, size_y = box["width"] * 0.4, box["height"] * 0.6
    left = box["x"] + (box["width"] - size_x) / 2
    top = box["y"] + (box["height"] - size_y) / 2
    return [[(left + x * size_x, top + y * size_y) for x, y in line]
            for line in STROKES[digit][0]]


def expect_label(page, label: str) -> None:
    sync_api.expect(page.locator("#top-label")).to_have_text(label, timeout=15_000)


def test_drawing_a_one_with_the_mouse_predicts_1(page, tmp_path):
    box = page.locator("#pad").bounding_box()
    for line in stroke_points(1, box):
        page.mouse.move(*line[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(line, line[1:], strict=False):
            for step in range(1, 11):  # many small moves, as a hand makes
                page.mouse.move(x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10)
        page.mouse.up()
    expect_label(page, "1")
    assert page.locator("#seen-figure").is_visible()
    seen = page.locator("#seen").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert seen == [28, 28]
    bars = page.locator(".bar-fill").evaluate_all("els => els.map(e => e.style.width)")
    assert len(bars) == 10 and float(bars[1].rstrip("%")) > 50
    shot = tmp_path / "serve-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.click("#clear")
    sync_api.expect(page.locator("#top-label")).to_have_text("–")


def test_drawing_a_seven_with_a_pen_predicts_7(page):
    box = page.locator("#pad").bounding_box()
    for line in stroke_points(7, box):
        events = [("pointerdown", line[0])]
        for (x0, y0), (x1, y1) in zip(line, line[1:], strict=False):
            events += [("pointermove", (x0 + (x1 - x0) * s / 12, y0 + (y1 - y0) * s / 12))
                       for s in range(1, 13)]
        events.append(("pointerup", line[-1]))
        for kind, (x, y) in events:
            page.dispatch_event("#pad", kind, {"pointerId": 7, "pointerType": "pen",
                                               "isPrimary": True, "clientX": x, "clientY": y,
                                               "button": 0 if kind == "pointerdown" else -1,
                                               "pressure": 0.5, "bubbles": True})
    expect_label(page, "7")


def test_uploading_an_image_predicts_it(page, tmp_path):
    photo = tmp_path / "four.png"
    draw_digit(4, canvas=(300, 220), size=160).save(photo)
    page.set_input_files("#upload", str(photo))
    expect_label(page, "4")
    assert page.locator("#seen-figure").is_visible()
    text = tmp_path / "notes.png"
    text.write_bytes(b"not an image at all")
    page.set_input_files("#upload", str(text))
    sync_api.expect(page.locator("#status")).to_contain_text("not a PNG")


def test_a_colour_model_offers_upload_only(browser, tmp_path):
    from tfcnn.models.network import build_model

    model = build_model("4C3-P2-D3", (32, 32, 3), ("cat", "dog", "fox"), seed=0,
                        dataset="folder:pets")
    with BackgroundServer(create_app(model, "pets")) as running:
        context = browser.new_context(viewport={"width": 800, "height": 640})
        page = context.new_page()
        page.goto(running.url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        assert not page.locator("#pad").is_visible()
        assert not page.locator("#clear").is_visible()
        picture = tmp_path / "red.png"
        Image.new("RGB", (50, 40), (200, 30, 30)).save(picture)
        page.set_input_files("#upload", str(picture))
        sync_api.expect(page.locator("#top-label")).to_have_text(
            re.compile("^(cat|dog|fox)$"), timeout=15_000)
        assert page.locator("#preview").is_visible()
        page.screenshot(path=str(tmp_path / "serve-page-colour.png"), full_page=True)
        context.close()


def test_an_unknown_upload_shows_not_sure(browser, tmp_path):
    """A model whose "unknown" rule flags everything: the page still shows the label, greyed,
    and says "not sure" (issue 26)."""
    from tfcnn.models.calibration import Calibration, OodRule
    from tfcnn.models.network import build_model

    model = build_model("4C3-P2-D3", (32, 32, 3), ("cat", "dog", "fox"), seed=0,
                        dataset="folder:pets")
    model.calibration = Calibration(1.0, OodRule("energy", -1e9, 0.95, "validation"))
    with BackgroundServer(create_app(model, "pets")) as running:
        context = browser.new_context(viewport={"width": 800, "height": 640})
        page = context.new_page()
        page.goto(running.url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        picture = tmp_path / "noise.png"
        Image.new("RGB", (50, 40), (20, 200, 30)).save(picture)
        page.set_input_files("#upload", str(picture))
        sync_api.expect(page.locator("#top-prob")).to_contain_text("not sure", timeout=15_000)
        assert page.locator("#top-label").get_attribute("data-state") == "unsure"
        sync_api.expect(page.locator("#top-label")).to_have_text(re.compile("^(cat|dog|fox)$"))
        context.close()
