"""Every API checks a request's numbers the same way (issue 25): `POST /explain`, v1
`:predict` and v2 `infer` answer 400 with one line naming the value for a pixel that is an
integer too large for a float, a string, a boolean, null, NaN or an infinity, or a list
where a number belongs; never 500, never 200.

Before the fix `/explain` answered 500 (an OverflowError) for `10**400` and 200 for "0.5",
true and false: it took any JSON and let numpy convert it.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from tfcnn.serve.app import BackgroundServer, create_app
from tfcnn.serve.http import ApiError, describe_validation_errors
from tfcnn.serve.inputs import InputSpec, decode_image

NAME = "digits"  # the name conftest's `served` model is served under
FINITE = "Input should be a finite number"
NUMBER = "Input should be a valid number"
# What one pixel is replaced by, as Python gives it to json.dumps, and the message expected.
BAD_PIXELS = {
    "integer overflow": (10**400, FINITE),
    "string": ("0.5", NUMBER),
    "true": (True, NUMBER),
    "false": (False, NUMBER),
    "null": (None, NUMBER),
    "NaN": (float("nan"), FINITE),
    "Infinity": (float("inf"), FINITE),
    "-Infinity": (float("-inf"), FINITE),
    "a list for a number": ([0.5], NUMBER),
}
# Where each API's message says the pixel image[0][1] is.
WHERE = {"explain": "image[0][1]", "v1": "instances[0][0][1]", "v2": "inputs[0].data[0][1]"}


@pytest.fixture(scope="module")
def client(served):
    with BackgroundServer(create_app(served, NAME)) as running, httpx.Client(
            base_url=running.url, timeout=60) as c:
        yield c


def image_with(pixel: object) -> list:
    """A 28×28 image of zeros whose pixel [0][1] is `pixel`."""
    image: list = [[0.0] * 28 for _ in range(28)]
    image[0][1] = pixel
    return image


def post(client: httpx.Client, api: str, image: object) -> httpx.Response:
    if api == "explain":
        path, body = "/explain", {"image": image}
    elif api == "v1":
        path, body = f"/v1/models/{NAME}:predict", {"instances": [image]}
    else:  # v2: nested data is allowed
        path, body = f"/v2/models/{NAME}/infer", {"inputs": [{
            "name": "images", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": image}]}
    return client.post(path, content=json.dumps(body, allow_nan=True),
                       headers={"Content-Type": "application/json"})


def one_line_error(answer: httpx.Response) -> str:
    assert answer.status_code == 400, (answer.status_code, answer.text[:300])
    error = answer.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error
    return error


@pytest.mark.parametrize("api", list(WHERE))
@pytest.mark.parametrize("case", list(BAD_PIXELS))
def test_a_bad_pixel_is_400_naming_it_on_every_api(client, api, case):
    pixel, expected = BAD_PIXELS[case]
    error = one_line_error(post(client, api, image_with(pixel)))
    if api == "v2" and case == "a list for a number":
        # v2 data may be nested to any depth: the extra level makes it uneven instead.
        assert error == "input 'images': data nested unevenly"
    else:
        assert error.startswith(f"{WHERE[api]}: {expected} (got "), error


@pytest.mark.parametrize("api", ["explain", "v1"])
@pytest.mark.parametrize("image", [[0.5] * 784, [[[[0.5]]] * 28] * 28, 0.5, [[]], []],
                         ids=["flat", "one level too deep", "a number", "empty row", "empty"])
def test_an_image_nested_to_the_wrong_depth_is_400(client, api, image):
    one_line_error(post(client, api, image))


def test_a_valid_image_is_answered_on_every_api_alike(client):
    image = np.round(np.random.default_rng(0).random((28, 28)), 3).tolist()
    answers = [post(client, api, image) for api in WHERE]
    assert [a.status_code for a in answers] == [200, 200, 200]
    explained, v1, v2 = (a.json() for a in answers)
    np.testing.assert_allclose(v1["predictions"][0], v2["outputs"][0]["data"], atol=1e-6)
    assert explained["prediction"]["index"] == int(np.argmax(v1["predictions"][0]))


# --- the decoder itself ---------------------------------------------------------------------

SPEC = InputSpec((3, 2, 1))


def test_the_fast_and_the_strict_path_decode_an_image_alike():
    image = [[0.25, 1], [0, 0.5], [0.125, 0.75]]
    plain = decode_image(json.dumps({"image": image}).encode(), SPEC)
    # A string anywhere else sends the body through pydantic's strict validation.
    strict = decode_image(json.dumps({"image": image, "note": "x"}).encode(), SPEC)
    assert plain.shape == (3, 2, 1) and plain.dtype == np.float32
    np.testing.assert_array_equal(plain, strict)
    np.testing.assert_array_equal(plain[..., 0], np.array(image, np.float32))


def test_decoding_names_the_field_and_the_value():
    with pytest.raises(ValidationError) as caught:
        decode_image(b'{"image": [[0.5, true], [0, 0], [0, 0]]}', SPEC)
    assert describe_validation_errors(caught.value.errors()) == (
        "image[0][1]: Input should be a valid number (got true)")
    with pytest.raises(ApiError, match=r"image: 1 value outside \[0, 1\], the first "
                                       r"image\[2\]\[1\] = 255"):
        decode_image(b'{"image": [[0, 0], [0, 0], [0, 255]]}', SPEC)
    with pytest.raises(ValidationError, match="image"):
        decode_image(b'{"picture": []}', SPEC)


def test_an_integer_too_large_for_a_float_is_a_400_wherever_it_comes_from():
    # The schemas stop it in a request; a caller handing Python ints gets the same 400.
    with pytest.raises(ApiError) as caught:
        SPEC.as_batch([[[10**400, 0]] * 3], "instances")
    assert caught.value.status_code == 400
    assert caught.value.detail == "instances: a number too large (expected numbers in [0, 1])"
