"""`tfcnn serve` (tfcnn.serve): the TensorFlow Serving API, errors and limits, server-side
batching, the OpenAPI schema, /info and the access log (uploads and the page's files are in
test_serve_upload).

A small untrained network serves here (built in a second), on a real uvicorn server on a
free port of 127.0.0.1: these tests check the plumbing (answers equal to the model's own
outputs, every bad input a 4xx with a JSON error), not accuracy; test_serve_v2 and
test_serve_browser read real digits with the trained network.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from tfcnn.serve.app import BackgroundServer, create_app
from tfcnn.serve.model import ServedModel

NAME = "digits"  # the name conftest's `served` model is served under
LIMIT = 2**20  # a 1 MiB body limit, so the 413 tests send little


@pytest.fixture(scope="module")
def server(served):
    with BackgroundServer(create_app(served, NAME, max_body_bytes=LIMIT)) as running:
        yield running


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


def expected(served: ServedModel, batch: np.ndarray) -> np.ndarray:
    return np.concatenate([served.predict(batch[i:i + 1]) for i in range(len(batch))])


# --- TensorFlow Serving REST API ----------------------------------------------------------


def test_status_and_metadata_are_tensorflow_servings(client):
    status = client.get(f"/v1/models/{NAME}")
    assert status.status_code == 200
    assert status.json() == {"model_version_status": [{
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get(f"/v1/models/{NAME}/versions/1").json() == status.json()
    meta = client.get(f"/v1/models/{NAME}/metadata").json()
    assert meta["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    dims = signature["inputs"]["images"]["tensor_shape"]["dim"]
    assert [d["size"] for d in dims] == ["-1", "28", "28", "1"]
    assert signature["inputs"]["images"]["dtype"] == "DT_FLOAT"
    out_dims = signature["outputs"]["probabilities"]["tensor_shape"]["dim"]
    assert [d["size"] for d in out_dims] == ["-1", "10"]


@pytest.mark.parametrize("form", ["instances HxW", "instances HxWx1", "inputs list",
                                  "inputs named", "version path", "form content-type"])
def test_predict_answers_the_models_probabilities(client, served, form):
    batch = images(3)
    path, headers = f"/v1/models/{NAME}:predict", {"Content-Type": "application/json"}
    body: dict = {"instances": batch.tolist()}
    if form == "instances HxW":
        body = {"instances": batch[..., 0].tolist()}
    elif form == "inputs list":
        body = {"inputs": batch.tolist()}
    elif form == "inputs named":
        body = {"inputs": {"images": batch.tolist()}, "signature_name": "serving_default"}
    elif form == "version path":
        path = f"/v1/models/{NAME}/versions/1:predict"
    elif form == "form content-type":  # what `curl -d` sends: TF Serving takes it as JSON
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = client.post(path, content=json.dumps(body), headers=headers)
    assert answer.status_code == 200, answer.text
    key = "outputs" if "inputs" in body else "predictions"
    assert list(answer.json()) == [key, "unknown"]
    assert answer.json()["unknown"] == [False] * 3  # this model has no "unknown" rule
    probs = np.array(answer.json()[key])
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs, expected(served, batch), atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


def keras_probabilities(served: ServedModel, batch: np.ndarray) -> np.ndarray:
    import keras

    logits = served.model.network(batch, training=False)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


def test_answers_equal_the_keras_models_within_1e_5(client, served):
    """Whatever runs the model (LiteRT when it agrees, else a TensorFlow graph), the
    answers are the Keras model's own, for one image and for a batch."""
    assert served.runtime in ("litert", "graph")
    assert client.get("/info").json()["runtime"] == served.runtime
    batch = images(40, seed=3)
    for part in (batch[:1], batch):
        answer = client.post(f"/v1/models/{NAME}:predict", json={"instances": part.tolist()})
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"],
                                   keras_probabilities(served, part), atol=1e-5, rtol=0)


def test_the_graph_runtime_answers_as_keras(served):
    from tfcnn.models.trained import TrainedModel
    from tfcnn.serve.model import serve_model

    graph = serve_model(TrainedModel(served.model.network), "graph", runtime="graph")
    assert graph.runtime == "graph"
    batch = images(5, seed=4)
    np.testing.assert_allclose(graph.predict(batch), keras_probabilities(served, batch),
                               atol=1e-6, rtol=0)


def test_extra_routers_are_given_the_served_model(served):
    from fastapi import APIRouter

    seen = []

    def extra(model: ServedModel) -> APIRouter:
        seen.append(model)
        router = APIRouter()

        @router.get("/extra")
        async def route() -> dict:
            return {"name": model.name, "classes": len(model.class_names)}

        return router

    with BackgroundServer(create_app(served, NAME, extra_routers=[extra])) as running:
        answer = httpx.get(f"{running.url}/extra")
    assert seen == [served]
    assert answer.json() == {"name": NAME, "classes": 10}


BAD_BODIES = {
    "empty body": b"",
    "whitespace": b"  \n",
    "malformed JSON": b'{"instances": [[[0.5, ',
    "not an object": b"[1, 2, 3]",
    "a string": b'"instances"',
    "neither key": b"{}",
    "both keys": b'{"instances": [], "inputs": []}',
    "null instances": b'{"instances": null}',
    "no images": b'{"instances": []}',
    "string pixels": b'{"instances": [[["0.5"]]]}',
    "boolean pixels": b'{"instances": [[[true]]]}',
    "null pixels": b'{"instances": [[[null]]]}',
    "NaN": b'{"instances": [[[NaN]]]}',
    "Infinity": b'{"instances": [[[Infinity]]]}',
    "huge number": b'{"instances": [[[1e999]]]}',
    "above 1": b'{"instances": [[[255]]]}',
    "below 0": b'{"instances": [[[-0.1]]]}',
    "wrong shape": b'{"instances": [[[0.5, 0.5], [0.5, 0.5]]]}',
    "flat instance": b'{"instances": [[0.5, 0.5]]}',
    "ragged rows": json.dumps({"instances": [[[0.5] * 28] * 27 + [[0.5] * 27]]}).encode(),
    "mixed ranks": json.dumps({"instances": [[[0.5] * 28] * 28,
                                             [[[0.5]] * 28] * 28]}).encode(),
    "3 channels": json.dumps({"instances": [[[[0.5] * 3] * 28] * 28]}).encode(),
    "deep nesting": b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "unknown input": json.dumps({"inputs": {"pixels": [[[0.5] * 28] * 28]}}).encode(),
    "unknown signature": b'{"signature_name": "classify", "instances": [[[0.5]]]}',
    "binary junk": bytes(range(256)),
    "invalid UTF-8": b'{"instances": "\xff\xfe"}',
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_predict_bodies_are_400_with_a_json_error(client, case):
    answer = client.post(f"/v1/models/{NAME}:predict", content=BAD_BODIES[case],
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error


def test_errors_name_the_field_and_what_was_expected(client):
    def error(body: bytes) -> str:
        return client.post(f"/v1/models/{NAME}:predict", content=body).json()["error"]

    assert error(b'{"instances": [[[0.5, true]]]}') == (
        "instances[0][0][1]: Input should be a valid number (got true)")
    assert error(b'{"instances": [[[0.5, true, false]]]}') == (
        "instances[0][0][1]: Input should be a valid number (got true) (and 1 more bad value)")
    assert error(b'{"instances": [[[0.5, 0.5]]]}') == (
        "instances: expected images of shape 28×28×1 or 28×28, got 1×2×1")
    assert error(b'{"instances": [[[0.5, ').startswith("JSON Parse error: ")
    assert error(b"{}") == "Missing 'inputs' or 'instances' key"


def pixels_0_255(n: int = 1) -> np.ndarray:
    return np.rint(images(n) * 255)


@pytest.mark.parametrize("form", ["instances", "inputs", "with a boolean"])
def test_0_255_pixels_get_the_hint_to_scale_and_a_count_of_values(client, form):
    batch = pixels_0_255(2)
    batch[0, 0, 0, 0], batch[1, 5, 5, 0] = 255, 0.5  # 2×784 - 1 values over 1 (0 is fine)
    over = int((batch > 1).sum())
    body = {"instances": batch.tolist()} if form != "inputs" else {"inputs": batch.tolist()}
    if form == "with a boolean":  # the strict (pydantic) path counts values too
        body["instances"][1][27][27] = [True]
    error = client.post(f"/v1/models/{NAME}:predict", json=body).json()["error"]
    assert "scale 0-255 pixels by 1/255" in error, error
    assert "problem" not in error and "\n" not in error
    if form != "with a boolean":
        where = "instances" if form == "instances" else "inputs"
        assert error == (f"{where}: {over:,} values outside [0, 1], the first "
                         f"{where}[0][0][0][0] = 255 (scale 0-255 pixels by 1/255)")


def test_a_value_out_of_range_names_itself_and_no_hint_when_not_pixels(client):
    batch = images(1)
    batch[0, 3, 4, 0] = -0.5
    answer = client.post(f"/v1/models/{NAME}:predict", json={"instances": batch[..., 0].tolist()})
    assert answer.status_code == 400
    assert answer.json()["error"] == ("instances: 1 value outside [0, 1], the first "
                                      "instances[0][3][4] = -0.5 (expected pixels in [0, 1])")


def test_unknown_model_or_version_is_404(client):
    assert client.get("/v1/models/other").json() == {
        "error": "Servable not found for request: Latest(other)"}
    assert client.get("/v1/models/other").status_code == 404
    assert client.get(f"/v1/models/{NAME}/versions/2").status_code == 404
    assert client.get("/v1/models/other/metadata").status_code == 404
    assert client.post("/v1/models/other:predict", json={"instances": []}).status_code == 404
    assert client.get("/no/such/page").json() == {"error": "Not Found"}
    assert client.delete("/info").status_code == 405


def test_bodies_over_the_limit_are_413_and_the_server_keeps_serving(client, server):
    path = f"/v1/models/{NAME}:predict"
    over = b" " * (LIMIT + 1)
    answer = client.post(path, content=over)  # declared by Content-Length: refused unread
    assert answer.status_code == 413 and "limit" in answer.json()["error"]

    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(LIMIT // 2**15 + 2):
            yield b" " * 2**15

    assert client.post(path, content=chunks()).status_code == 413
    upload = client.post("/predict", files={"file": ("big.png", over)})
    assert upload.status_code == 413
    bomb = gzip.compress(b" " * (4 * LIMIT))  # small on the wire, over the limit inflated
    assert len(bomb) < LIMIT
    inflated = client.post(f"/v2/models/{NAME}/infer", content=bomb,
                           headers={"Content-Encoding": "gzip"})
    assert inflated.status_code == 413
    # Headers only, body never sent: the answer comes anyway (after a bounded wait).
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as raw:
        raw.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * LIMIT}\r\n"
                    "\r\n".encode())
        raw.settimeout(15)
        assert raw.recv(100).startswith(b"HTTP/1.1 413")
    assert client.post(path, json={"instances": images(1).tolist()}).status_code == 200


# --- batching ---------------------------------------------------------------------------------


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(client, server, served):
    n = 24
    batch = images(n, seed=5)
    before = client.get("/info").json()["batching"]
    answers: list = [None] * n
    barrier = threading.Barrier(n)

    def ask(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            barrier.wait()
            answers[i] = c.post(f"/v1/models/{NAME}:predict",
                                json={"instances": batch[i:i + 1].tolist()})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = client.get("/info").json()["batching"]
    assert all(a is not None and a.status_code == 200 for a in answers)
    got = np.array([a.json()["predictions"][0] for a in answers])
    np.testing.assert_allclose(got, expected(served, batch), atol=1e-6)
    assert after["requests"] - before["requests"] == n
    assert after["images"] - before["images"] == n
    # Some shared a model call: those that came while the model ran (7-13 calls for the
    # 24 in 15 trials on a loaded 2-core machine; the batcher's own tests pin the policy).
    assert after["batches"] - before["batches"] < n


# --- the schema, /info and the log ------------------------------------------------------------


def test_openapi_documents_the_three_apis(client):
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    for path in ("/v1/models/{name}", "/v1/models/{name}/metadata", "/v1/models/{name}:predict",
                 "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
                 "/v2/models/{name}/ready", "/v2/models/{name}/infer", "/predict", "/info"):
        assert path in paths, path
    components = schema["components"]["schemas"]
    assert {"PredictRequest", "InferRequest", "ErrorResponse"} <= set(components)
    predict = schema["paths"]["/v1/models/{name}:predict"]["post"]
    assert {"200", "400", "404", "413"} <= set(predict["responses"])
    name = next(p for p in predict["parameters"] if p["name"] == "name")
    assert name["schema"]["enum"] == [NAME]


def test_info_describes_the_model(client):
    info = client.get("/info").json()
    assert info["name"] == NAME and info["class_names"] == list("0123456789")
    assert info["image_shape"] == [28, 28, 1] and info["preprocessing"] == "mnist"
    assert info["max_body_bytes"] == LIMIT and info["batching"]["max_batch"] == 64


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tfcnn.serve.access"]


def test_one_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="tfcnn.serve.access"):
        client.get(f"/v1/models/{NAME}")
        client.post(f"/v1/models/{NAME}:predict", content=b"{")
        client.get("/nope")
        # The server logs a request after sending its response, so the client can read the
        # last response before its line is written: wait for it (briefly).
        deadline = time.monotonic() + 5
        while len(access_lines(caplog)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = access_lines(caplog)
    assert len(lines) == 3
    assert re.fullmatch(rf"127\.0\.0\.1:\d+ GET /v1/models/{NAME} 200 \d+\.\d ms", lines[0])
    assert f"POST /v1/models/{NAME}:predict 400 " in lines[1]
    assert "GET /nope 404 " in lines[2]
