"""`tfcnn explain` (cli_explain, through an argparse built with its add_parser) and the
server's `POST /explain` route, on tiny saved models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from support import draw_digit
from support import parse_explain as parse
from tfcnn import cli_explain
from tfcnn.core.errors import ConfigError, RunDirError
from tfcnn.models.network import build_model

DIGITS = tuple("0123456789")


@pytest.fixture(scope="module")
def digit_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "digits.keras"
    build_model("4C3-P2-8C3-D10", (28, 28, 1), DIGITS, seed=0, prepare="mnist",
                dataset="mnist").save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = [folder / "three.png", folder / "seven.jpg"]
    draw_digit(3).save(paths[0])
    draw_digit(7).save(paths[1])
    return paths


def test_json_lists_predictions_and_attribution_files(digit_model, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli_explain.run(parse(str(digit_model), *map(str, images), "--method", "all",
                                 "--out", str(out), "--json"))
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == [str(p) for p in images]
    for r in results:
        assert {"label", "index", "probability", "top_k", "target", "figure",
                "attributions"} <= set(r)
        assert len(r["top_k"]) == 3 and r["target"] == r["label"]
        assert sorted(r["attributions"]) == ["gradcam", "integrated-gradients", "occlusion"]
        for path in r["attributions"].values():
            array = np.load(path)
            assert array.shape == (28, 28) and array.dtype == np.float32
        with Image.open(r["figure"]) as figure:
            assert figure.format == "PNG" and figure.width > 600
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}-{m}.npy" for s in ("three", "seven")
         for m in ("gradcam", "integrated-gradients", "occlusion")]
        + ["three-explained.png", "seven-explained.png"])


def test_target_and_layers(digit_model, images, tmp_path, capsys):
    code = cli_explain.run(parse(str(digit_model), str(images[0]), "--target", "8",
                                 "--layers", "--out", str(tmp_path), "--json"))
    assert code == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["target"] == "8" and list(result["attributions"]) == ["gradcam"]
    assert sorted(result["layers"]) == ["conv1", "conv2", "filters"]
    assert all(Path(p).is_file() for p in result["layers"].values())


def test_an_unreadable_file_is_an_error_entry(digit_model, images, tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code = cli_explain.run(parse(str(digit_model), str(images[0]), str(bad), "--out",
                                 str(tmp_path / "out")))
    assert code == 1
    text = capsys.readouterr().out
    assert "three.png: predicted" in text and "notes.png: error:" in text


@pytest.mark.parametrize(("argv", "message"), [
    (("--method", "saliency"), "not an explanation method"),
    (("--worst", "0"), "--worst"),
    ((), "no IMAGE given"),
])
def test_bad_arguments(digit_model, argv, message):
    with pytest.raises(ConfigError, match=message):
        cli_explain.run(parse(str(digit_model), *argv))


def test_images_and_worst_exclude_each_other(digit_model, images):
    with pytest.raises(ConfigError, match="not both"):
        cli_explain.run(parse(str(digit_model), str(images[0]), "--worst", "3"))


def test_missing_model(tmp_path, images):
    with pytest.raises(RunDirError, match="no such run directory"):
        cli_explain.run(parse(str(tmp_path / "nope"), str(images[0])))


def test_worst_explains_the_highest_loss_test_images(digit_model, shared_datasets_dir,
                                                     tmp_path, capsys):
    from tfcnn.data.locate import load_dataset
    from tfcnn.models.loader import load_checked_model

    code = cli_explain.run(parse(str(digit_model), "--dataset", "mnist", "--worst", "3",
                                 "--data-dir", str(shared_datasets_dir), "--out",
                                 str(tmp_path), "--json"))
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    # The three highest-loss images, computed here from the model's own probabilities.
    data = load_dataset("mnist", str(shared_datasets_dir))
    model = load_checked_model(digit_model)
    x = data.x_test[..., None].astype(np.float32) / 255
    logits = np.concatenate([np.asarray(model(x[i:i + 2000]), np.float64)
                             for i in range(0, len(x), 2000)])
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    losses = -logp[np.arange(len(x)), data.y_test]
    worst = np.argsort(-losses, kind="stable")[:3]
    assert [r["file"] for r in results] == [f"mnist-test-{i}" for i in worst]
    assert [r["true"] for r in results] == [str(data.y_test[i]) for i in worst]


# --- POST /explain --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(digit_model):
    from tfcnn.models.loader import load_checked_model
    from tfcnn.serve.app import create_app

    model = load_checked_model(digit_model)
    with TestClient(create_app(model, "digits")) as running:
        running.model = model
        yield running


def png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_explain_route_for_an_upload(client):
    from tfcnn.explain.methods import gradcam

    response = client.post("/explain?top_k=10",
                           files={"file": ("d.png", png_bytes(draw_digit(3)), "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert len(body["prediction"]["top_k"]) == 10 and body["method"] == "gradcam"
    assert body["target"] == body["prediction"]["label"]
    heat = np.array(body["heatmap"])
    assert heat.shape == (28, 28)
    assert body["overlay"].startswith("data:image/png;base64,")
    assert [(m["layer"], m["shape"]) for m in body["feature_maps"]] == [
        ("conv1", [26, 26, 4]), ("conv2", [11, 11, 8])]
    # The live path's heatmap is the method's own, on the input the answer shows.
    import base64
    import io

    seen = Image.open(io.BytesIO(base64.b64decode(body["image"].split(",")[1])))
    x = np.asarray(seen, np.float32)[None, ..., None] / 255
    np.testing.assert_allclose(heat, gradcam(client.model, x, body["target_index"])[0],
                               atol=0.02)


@pytest.mark.parametrize("method", ["integrated-gradients", "occlusion"])
def test_explain_route_json_image_other_methods(client, method):
    image = np.zeros((28, 28))
    image[5:23, 12:16] = 1
    response = client.post(f"/explain?method={method}&target=1&feature_maps=false",
                           json={"image": image.tolist()})
    assert response.status_code == 200
    body = response.json()
    assert body["target"] == "1" and body["method"] == method
    assert "feature_maps" not in body
    assert np.array(body["heatmap"]).shape == (28, 28)


@pytest.mark.parametrize(("request_kwargs", "query", "status", "message"), [
    ({"json": {"image": [[0.5]]}}, "", 400, "expected images of shape 28×28"),
    ({"json": {"image": [[2.0] * 28] * 28}}, "", 400, "outside [0, 1]"),
    ({"json": {"picture": []}}, "", 400, "image: Field required"),
    ({"content": b""}, "", 400, "request body is empty"),
    ({"files": {"file": ("x.png", b"abc", "image/png")}}, "", 400, "not a PNG"),
    ({"json": {"image": [[0.0] * 28] * 28}}, "?method=saliency", 400, "method"),
    ({"json": {"image": [[0.0] * 28] * 28}}, "?target=eleven", 400, "not a class"),
    ({"json": {"image": [[0.0] * 28] * 28}}, "?top_k=0", 400, "top_k"),
])
def test_explain_route_refuses_bad_input(client, request_kwargs, query, status, message):
    response = client.post("/explain" + query, **request_kwargs)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_explain_route_is_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/explain"]["post"]
    assert sorted(post["requestBody"]["content"]) == ["application/json",
                                                      "multipart/form-data"]
    assert {"200", "400"} <= set(post["responses"])


def test_explain_route_for_a_model_without_convolutions():
    from tfcnn.serve.app import create_app

    model = build_model("D16-D10", (28, 28, 1), DIGITS, seed=0, prepare="mnist")
    with TestClient(create_app(model, "dense")) as running:
        image = {"image": [[0.0] * 28] * 28}
        refused = running.post("/explain", json=image)
        assert refused.status_code == 400
        assert "no convolution" in refused.json()["error"]
        answered = running.post("/explain?method=occlusion", json=image)
        assert answered.status_code == 200 and answered.json()["feature_maps"] == []
