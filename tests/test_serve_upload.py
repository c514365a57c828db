"""`tfcnn serve`: POST /predict (image uploads, answered as `tfcnn predict --json`), the
page and its files (all served locally), and a colour model's shapes.

A small untrained network serves, as in test_serve_api; test_serve_browser reads digits
with the trained one.
"""

from __future__ import annotations

import base64
import io
import re

import httpx
import numpy as np
import pytest
from PIL import Image

from support import draw_digit
from tfcnn.serve.app import BackgroundServer, create_app

NAME = "digits"  # the name conftest's `served` model is served under


@pytest.fixture(scope="module")
def client(served):
    with BackgroundServer(create_app(served, NAME)) as running, httpx.Client(
            base_url=running.url, timeout=30) as c:
        yield c


# --- POST /predict: image uploads ----------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_upload_answers_as_tfcnn_predict_json(client, served, tmp_path, monkeypatch):
    from tfcnn.predict import prediction

    monkeypatch.chdir(tmp_path)  # the server runs in this process: a stray file lands here
    picture = draw_digit(3, canvas=(120, 100), size=80)
    answer = client.post("/predict?top_k=4", files={"file": ("three.png", _png(picture))})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert set(result) == {"file", "label", "index", "probability", "unknown", "top_k"}
    assert result["file"] == "three.png" and len(result["top_k"]) == 4
    image = served.prepare_upload(_png(picture), "three.png")
    assert result == prediction("three.png", served.predict(image[None])[0],
                                list(served.class_names), 4)
    assert list(tmp_path.iterdir()) == []  # nothing written outside a temp dir


def test_upload_can_return_the_28x28_image_the_model_saw(client, served):
    data = _png(draw_digit(7, canvas=(90, 90), size=70))
    result = client.post("/predict", params={"include_image": "true"},
                         files={"file": ("seven.png", data)}).json()
    prefix = "data:image/png;base64,"
    assert result["image"].startswith(prefix)
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["image"][len(prefix):]))))
    assert seen.shape == (28, 28)
    np.testing.assert_allclose(seen / 255, served.prepare_upload(data, "x")[..., 0], atol=0.003)


@pytest.mark.parametrize("case", ["text file", "empty file", "truncated PNG", "no file",
                                  "file as a text field", "top_k 0", "top_k text",
                                  "not multipart"])
def test_bad_uploads_are_400(client, case):
    png = _png(draw_digit(1))
    kwargs: dict = {"files": {"file": ("a.png", png)}}
    url = "/predict"
    if case == "text file":
        kwargs = {"files": {"file": ("a.png", b"hello, world")}}
    elif case == "empty file":
        kwargs = {"files": {"file": ("a.png", b"")}}
    elif case == "truncated PNG":
        kwargs = {"files": {"file": ("a.png", png[: len(png) // 2])}}
    elif case == "no file":
        kwargs = {"files": {"other": ("a.png", png)}}
    elif case == "file as a text field":
        kwargs = {"data": {"file": "a.png"}}
    elif case == "top_k 0":
        url += "?top_k=0"
    elif case == "top_k text":
        url += "?top_k=three"
    elif case == "not multipart":
        kwargs = {"content": png, "headers": {"Content-Type": "image/png"}}
    answer = client.post(url, **kwargs)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]


# --- the page, its files and the docs ----------------------------------------------------------


def test_page_loads_only_its_own_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "static/app.js" in assets and "static/style.css" in assets
    for asset in assets:
        assert not re.match(r"(https?:)?//", asset), asset
    for asset in ("static/app.js", "static/style.css"):
        body = client.get("/" + asset)
        assert body.status_code == 200 and body.text
        assert not re.search(r"https?://", body.text), asset
    docs = client.get("/docs")  # Swagger UI's files come from the server too
    assert docs.status_code == 200 and "cdn" not in docs.text
    scripts = re.findall(r'<script src="([^"]+)"', docs.text)
    assert scripts and all(client.get(s).status_code == 200 for s in scripts)


def test_a_colour_model_is_served_with_its_own_shapes():
    from tfcnn.models.network import build_model

    model = build_model("4C3-P2-D3", (32, 32, 3), ("cat", "dog", "fox"), seed=0,
                        dataset="folder:pets")
    with BackgroundServer(create_app(model, "pets")) as running, httpx.Client(
            base_url=running.url, timeout=30) as c:
        info = c.get("/info").json()
        assert info["preprocessing"] == "scale" and info["image_shape"] == [32, 32, 3]
        batch = np.random.default_rng(1).random((2, 32, 32, 3)).tolist()
        answer = c.post("/v1/models/pets:predict", json={"instances": batch})
        assert np.array(answer.json()["predictions"]).shape == (2, 3)
        gray = c.post("/v1/models/pets:predict", json={"instances": [[[0.5] * 32] * 32]})
        assert gray.status_code == 400 and "32×32×3" in gray.json()["error"]
        assert c.get("/v2/models/pets").json()["inputs"][0]["shape"] == [-1, 32, 32, 3]
        picture = Image.new("RGB", (50, 40), (200, 30, 30))
        result = c.post("/predict", files={"file": ("red.jpg", _png(picture))}).json()
        assert result["label"] in ("cat", "dog", "fox") and len(result["top_k"]) == 3
