"""The served model's "unknown" answers (issue 26): v1 adds an `unknown` list beside its
predictions, v2 a BOOL output, the upload its `--json` field; a model's rule decides."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

NAME = "digits"


@pytest.fixture(scope="module")
def client():
    import httpx

    from tfcnn.models.calibration import Calibration, OodRule
    from tfcnn.models.network import build_model
    from tfcnn.serve.app import BackgroundServer, create_app

    model = build_model("4C3-P2-D10", (28, 28, 1), tuple("0123456789"), seed=0,
                        dataset="mnist")
    # A threshold between the scores of a blank image and of a bright one, so the two get
    # different answers whatever the untrained weights are.
    blank, bright = (-np.asarray(model(np.full((1, 28, 28, 1), v, np.float32))).max()
                     for v in (0.0, 1.0))
    model.calibration = Calibration(1.0, OodRule("max_logit", float(blank + bright) / 2,
                                                 0.95, "validation"))
    with BackgroundServer(create_app(model, NAME)) as running, \
            httpx.Client(base_url=running.url, timeout=30) as c:
        yield c, model


def _expected_unknown(model, batch):
    logits = np.asarray(model(batch.astype(np.float32), training=False))
    return (-logits.max(axis=1) > model.calibration.ood.threshold).tolist()


def test_v1_and_v2_carry_the_unknown_flags_beside_the_probabilities(client):
    c, model = client
    batch = np.stack([np.full((28, 28, 1), v) for v in (0.0, 1.0, 0.0, 1.0)])
    expected = _expected_unknown(model, batch)
    assert len(set(expected)) == 2, "the fixture should give both answers"
    v1 = c.post(f"/v1/models/{NAME}:predict", json={"instances": batch.tolist()}).json()
    assert np.array(v1["predictions"]).shape == (4, 10) and v1["unknown"] == expected
    v2 = c.post(f"/v2/models/{NAME}/infer", json={"inputs": [{
        "name": "images", "datatype": "FP32", "shape": list(batch.shape),
        "data": batch.ravel().tolist()}]}).json()
    probs, unknown = v2["outputs"]
    assert probs["name"] == "probabilities" and probs["shape"] == [4, 10]
    assert unknown == {"name": "unknown", "datatype": "BOOL", "shape": [4], "data": expected}
    # Asking for the probabilities alone gives them alone, as before.
    only = c.post(f"/v2/models/{NAME}/infer", json={
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1],
                    "data": [0.0] * 784}], "outputs": [{"name": "probabilities"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["probabilities"]
    meta = c.get(f"/v2/models/{NAME}").json()
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "unknown"]


def test_binary_v2_outputs_hold_the_flags_as_bytes(client):
    c, model = client
    batch = np.zeros((2, 28, 28, 1), np.float32)
    header = json.dumps({"inputs": [{"name": "images", "datatype": "FP32",
                                     "shape": [2, 28, 28, 1],
                                     "parameters": {"binary_data_size": batch.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    answer = c.post(f"/v2/models/{NAME}/infer", content=header + batch.tobytes(),
                    headers={"Inference-Header-Content-Length": str(len(header))})
    length = int(answer.headers["Inference-Header-Content-Length"])
    meta = json.loads(answer.content[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in meta["outputs"]]
    assert sizes == [2 * 10 * 4, 2]
    flags = np.frombuffer(answer.content[length + sizes[0]:], dtype=bool)
    assert flags.tolist() == _expected_unknown(model, batch)


def test_the_upload_answer_says_unknown(client):
    c, model = client
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buffer, "PNG")
    answer = c.post("/predict", files={"file": ("blank.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 200
    assert answer.json()["unknown"] is _expected_unknown(model, np.zeros((1, 28, 28, 1)))[0]
