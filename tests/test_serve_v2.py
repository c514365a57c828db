"""`tfcnn serve`'s Open Inference Protocol v2 (KServe, Triton), driven by the real client
`tritonclient[http]` (binary tensors, JSON tensors, compression, errors) and by raw HTTP
for the corners a client library never sends."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as tritonclient_http
from tritonclient.utils import InferenceServerException

from tfcnn.serve.app import BackgroundServer, create_app

NAME = "digits"  # the name conftest's `served` model is served under


@pytest.fixture(scope="module")
def server(served):
    with BackgroundServer(create_app(served, NAME, max_body_bytes=2**20)) as running:
        yield running


@pytest.fixture()
def triton(server):
    client = tritonclient_http.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


def infer(triton, batch: np.ndarray, *, binary_in: bool = True, binary_out: bool = True,
          **kwargs) -> np.ndarray:
    tensor = tritonclient_http.InferInput("images", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary_in)
    wanted = tritonclient_http.InferRequestedOutput("probabilities", binary_data=binary_out)
    result = triton.infer(NAME, [tensor], outputs=[wanted], **kwargs)
    return result.as_numpy("probabilities")


def test_health_and_metadata_through_tritonclient(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready(NAME) and triton.is_model_ready(NAME, "1")
    assert not triton.is_model_ready("other")
    server = triton.get_server_metadata()
    assert server["name"] == "tfcnn" and "binary_tensor_data" in server["extensions"]
    assert triton.get_model_metadata(NAME) == {
        "name": NAME, "versions": ["1"], "platform": "tensorflow_keras",
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28, 1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
                    {"name": "unknown", "datatype": "BOOL", "shape": [-1]}]}
    assert triton.get_model_metadata(NAME, "1")["name"] == NAME


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary in", "JSON in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary out", "JSON out"])
def test_infer_through_tritonclient_matches_the_model(triton, served, binary_in, binary_out):
    batch = images(5)
    probs = infer(triton, batch, binary_in=binary_in, binary_out=binary_out)
    assert probs.dtype == np.float32 and probs.shape == (5, 10)
    np.testing.assert_allclose(probs, served.predict(batch), atol=1e-6)


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests_and_versions(triton, served, compression):
    batch = images(2, seed=3)
    probs = infer(triton, batch, request_compression_algorithm=compression,
                  model_version="1", request_id="r-7")
    np.testing.assert_allclose(probs, served.predict(batch), atol=1e-6)


def test_tritonclient_sees_errors_with_their_status(triton):
    batch = images(1)
    with pytest.raises(InferenceServerException, match="unknown model") as unknown:
        tensor = tritonclient_http.InferInput("images", [1, 28, 28, 1], "FP32")
        tensor.set_data_from_numpy(batch)
        triton.infer("other", [tensor])
    assert unknown.value.status() == "404"
    wrong_type = tritonclient_http.InferInput("images", [1, 28, 28, 1], "FP64")
    wrong_type.set_data_from_numpy(batch.astype(np.float64))
    with pytest.raises(InferenceServerException, match="FP32") as bad:
        triton.infer(NAME, [wrong_type])
    assert bad.value.status() == "400"
    wrong_shape = tritonclient_http.InferInput("images", [1, 28, 28], "FP32")
    wrong_shape.set_data_from_numpy(batch[..., 0])
    np.testing.assert_allclose(triton.infer(NAME, [wrong_shape]).as_numpy("probabilities"),
                               infer(triton, batch), atol=1e-6)  # [N, 28, 28] is taken too
    small = tritonclient_http.InferInput("images", [1, 14, 14, 1], "FP32")
    small.set_data_from_numpy(batch[:, :14, :14])
    with pytest.raises(InferenceServerException, match="shape"):
        triton.infer(NAME, [small])


def _request(data, shape=(1, 28, 28, 1), **extra) -> dict:
    tensor = {"name": "images", "shape": list(shape), "datatype": "FP32", "data": data}
    return {"inputs": [tensor], **extra}


def test_json_data_may_be_flat_or_nested_and_the_id_comes_back(server, served):
    batch = images(2, seed=9)
    url = f"{server.url}/v2/models/{NAME}/infer"
    flat = httpx.post(url, json=_request(batch.ravel().tolist(), (2, 28, 28, 1), id="a1"))
    nested = httpx.post(url, json=_request(batch.tolist(), (2, 28, 28, 1)))
    assert flat.status_code == nested.status_code == 200, flat.text
    body = flat.json()
    assert body["id"] == "a1" and body["model_name"] == NAME and body["model_version"] == "1"
    output, unknown = body["outputs"]
    assert unknown == {"name": "unknown", "datatype": "BOOL", "shape": [2],
                       "data": [False, False]}  # this model has no "unknown" rule
    assert output["name"] == "probabilities" and output["datatype"] == "FP32"
    assert output["shape"] == [2, 10]
    np.testing.assert_allclose(np.reshape(output["data"], (2, 10)), served.predict(batch),
                               atol=1e-6)
    assert nested.json()["outputs"] == body["outputs"]
    everything = httpx.post(url, json=_request(batch.ravel().tolist(), (2, 28, 28, 1),
                                               parameters={"binary_data_output": True}))
    header = int(everything.headers["Inference-Header-Content-Length"])
    meta = json.loads(everything.content[:header])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 80}
    np.testing.assert_allclose(np.frombuffer(everything.content[header:header + 80], "<f4"),
                               np.ravel(output["data"]), atol=1e-7)
    assert meta["outputs"][1]["parameters"] == {"binary_data_size": 2}  # the BOOL flags


def _binary(values: np.ndarray, size: int | None = None, extra: bytes = b"",
            shape=(1, 28, 28, 1)) -> tuple[bytes, dict[str, str]]:
    data = values.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{
        "name": "images", "shape": list(shape), "datatype": "FP32",
        "parameters": {"binary_data_size": len(data) if size is None else size}}]}).encode()
    return header + data + extra, {"Inference-Header-Content-Length": str(len(header))}


ZEROS = np.zeros((1, 28, 28, 1))
BAD = {
    "empty": (b"", {}),
    "malformed JSON": (b'{"inputs": [', {}),
    "no inputs": (b'{"inputs": []}', {}),
    "inputs not a list": (b'{"inputs": {"name": "images"}}', {}),
    "two inputs": (json.dumps({"inputs": [_request([0.0] * 784)["inputs"][0]] * 2}).encode(),
                   {}),
    "unknown input": (json.dumps({"inputs": [{**_request([0.0] * 784)["inputs"][0],
                                              "name": "x"}]}).encode(), {}),
    "string data": (json.dumps(_request(["0.5"] * 784)).encode(), {}),
    "bool data": (json.dumps(_request([True] * 784)).encode(), {}),
    "NaN data": (json.dumps(_request([float("nan")] * 784)).encode(), {}),
    "data out of range": (json.dumps(_request([255] * 784)).encode(), {}),
    "too few values": (json.dumps(_request([0.5] * 783)).encode(), {}),
    "uneven nesting": (json.dumps(_request([[0.5] * 28] * 27 + [[0.5] * 29])).encode(), {}),
    "no data": (json.dumps({"inputs": [{"name": "images", "shape": [1, 28, 28, 1],
                                         "datatype": "FP32"}]}).encode(), {}),
    "negative dim": (json.dumps(_request([0.5] * 784, (-1, 28, 28, 1))).encode(), {}),
    "zero images": (json.dumps(_request([], (0, 28, 28, 1))).encode(), {}),
    "huge dims": (json.dumps(_request([0.5], (2**31 - 1, 28, 28, 1))).encode(), {}),
    "float dims": (json.dumps(_request([0.5] * 784, (1.0, 28, 28, 1))).encode(), {}),
    "unknown output": (json.dumps(_request([0.5] * 784,
                                           outputs=[{"name": "logits"}])).encode(), {}),
    "classification": (json.dumps(_request([0.5] * 784, outputs=[{
        "name": "probabilities", "parameters": {"classification": 3}}])).encode(), {}),
    "binary too short": _binary(ZEROS[:, :27]),
    "binary size wrong": _binary(ZEROS, size=100),
    "binary trailing bytes": _binary(ZEROS, extra=b"\0\0\0\0"),
    "binary NaN": _binary(np.full((1, 28, 28, 1), np.nan)),
    "binary out of range": _binary(np.full((1, 28, 28, 1), 2.0)),
    "header length past the end": (b"{}", {"Inference-Header-Content-Length": "99"}),
    "header length not a number": (b"{}", {"Inference-Header-Content-Length": "x"}),
    "unknown encoding": (b"{}", {"Content-Encoding": "br"}),
    "corrupt gzip": (b"not gzip", {"Content-Encoding": "gzip"}),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_infer_requests_are_400_with_a_json_error(server, case):
    body, headers = BAD[case]
    answer = httpx.post(f"{server.url}/v2/models/{NAME}/infer", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert isinstance(answer.json()["error"], str)


def test_unknown_model_or_version_is_404(server):
    for path in ("/v2/models/other", "/v2/models/other/ready", f"/v2/models/{NAME}/versions/2",
                 f"/v2/models/{NAME}/versions/2/ready"):
        answer = httpx.get(server.url + path)
        assert answer.status_code == 404 and "unknown model" in answer.json()["error"], path
    answer = httpx.post(f"{server.url}/v2/models/other/infer", json=_request([0.5] * 784))
    assert answer.status_code == 404


@pytest.mark.slow
def test_the_trained_network_reads_mnist_through_tritonclient(trained_mnist_run,
                                                              shared_datasets_dir):
    from tfcnn.data.locate import load_dataset
    from tfcnn.models.network import load_model

    data = load_dataset("mnist", shared_datasets_dir, download=False, progress=False)
    batch = (data.x_test[:500, ..., None] / 255).astype(np.float32)
    app = create_app(load_model(trained_mnist_run / "model.keras"), "mnist")
    with BackgroundServer(app) as running:
        client = tritonclient_http.InferenceServerClient(running.url.removeprefix("http://"))
        tensor = tritonclient_http.InferInput("images", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        probs = client.infer("mnist", [tensor]).as_numpy("probabilities")
        client.close()
    accuracy = (probs.argmax(axis=1) == data.y_test[:500]).mean()
    assert accuracy > 0.95, accuracy


@pytest.mark.parametrize("form", ["JSON", "binary"])
def test_0_255_pixels_get_the_hint_to_scale(server, form):
    values = np.rint(images(1, seed=2) * 255)
    values[0, 0, 0, 0] = 200
    over = int((values > 1).sum())
    if form == "JSON":
        body, headers = json.dumps(_request(values.ravel().tolist())).encode(), {}
    else:
        body, headers = _binary(values)
    answer = httpx.post(f"{server.url}/v2/models/{NAME}/infer", content=body, headers=headers)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "scale 0-255 pixels by 1/255" in error and "problem" not in error, error
    assert f"{over - 1:,} more bad values" in error if form == "JSON" else (
        f"{over:,} values outside [0, 1]" in error), error
