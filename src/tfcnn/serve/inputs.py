"""Request bodies → the model's input batch: the checks every API shares (`InputSpec.as_batch`:
shape, finite, range, with the 0-255 hint) and the three JSON decoders (TensorFlow Serving's
`:predict` body, the v2 `infer` request and `/explain`'s `{"image": ...}`).

These functions only need numpy, orjson and pydantic (no TensorFlow, no event loop), so a
large body can be decoded in a worker process (`serve.offload`) and a small one inline.

Numbers are checked the same way by every decoder: either by the strict `Pixel` type of
`serve.schemas` (through its pydantic models, whose errors name the field), or, for the
common valid body of v1 and `/explain`, by a fast path: orjson (~30 µs for one 28×28 image,
against ~90 µs for pydantic's strict validation) and one numpy conversion (`_plain_body`,
`_plain_array`). The fast path only takes bodies whose every number pydantic would take too;
anything unusual (booleans, strings, nulls, NaN, numbers too large for a float, ragged
nesting, bad JSON) goes to pydantic. Both paths then share `as_batch`, so they accept and
refuse the same bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tfcnn.serve.http import ApiError, hint
from tfcnn.serve.schemas import ExplainRequest, InferRequest, PredictRequest

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
# The "unlike the training images" flags: v2's second output (BOOL [N]) and a key beside
# v1's "predictions"/"outputs" (a list of booleans), so existing clients read what they did.
UNKNOWN_OUTPUT = UNKNOWN_KEY = "unknown"
SIGNATURE = "serving_default"


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: one H×W×C image per row, values in [0, 1]."""

    image_shape: tuple[int, int, int]

    def shape_text(self) -> str:
        h, w, c = self.image_shape
        return f"{h}×{w}×{c}" + (f" or {h}×{w}" if c == 1 else "")

    def as_batch(self, values: Any, where: str, *, one: bool = False) -> np.ndarray:
        """`values` (nested lists or an array) as an N×H×W×C float32 batch, N ≥ 1, or a 400.
        `one`: `values` is one image (H×W×C or H×W), given back as a batch of 1; messages
        then index into the image itself."""
        try:
            batch = np.asarray([values] if one else values, dtype=np.float32)
        except OverflowError as exc:  # a Python int beyond float range (10**400)
            raise ApiError(400, f"{where}: a number too large (expected numbers in "
                                "[0, 1])") from exc
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"{where}: images of different shapes or nested unevenly "
                                f"(expected each {self.shape_text()})") from exc
        sent_ndim = batch.ndim
        if batch.ndim == 3 and self.image_shape[2] == 1:
            batch = batch[..., np.newaxis]
        if batch.ndim != 4 or batch.shape[1:] != self.image_shape:
            got = "×".join(str(n) for n in batch.shape[1:]) or "a flat list"
            raise ApiError(400, f"{where}: expected images of shape {self.shape_text()}, "
                                f"got {got}")
        if len(batch) == 0:
            raise ApiError(400, f"{where}: no images")
        low, high = float(batch.min()), float(batch.max())  # NaN propagates into both
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ApiError(400, f"{where}: NaN or infinite values")
        if low < 0 or high > 1:
            raise ApiError(400, range_message(batch, sent_ndim, where, one))
        return batch


def range_message(batch: np.ndarray, sent_ndim: int, where: str, one: bool = False) -> str:
    """How many values are outside [0, 1], the first one, and the 1/255 hint when the
    values look like 0-255 pixels. `one`: the batch wraps one image (no batch index)."""
    bad = (batch < 0) | (batch > 1)
    count = int(bad.sum())
    first = np.unravel_index(int(np.argmax(bad)), batch.shape)
    shown = "".join(f"[{int(i)}]" for i in first[int(one):sent_ndim])
    return (f"{where}: {count:,} value{'s' if count != 1 else ''} outside [0, 1], the first "
            f"{where}{shown} = {float(batch[first]):g} ({hint(float(batch.max()))})")


# --- the fast path for plain, valid JSON ------------------------------------------------------


def _plain_body(raw: bytes) -> dict[str, Any] | None:
    """The body as a dict when it may take the fast path (valid JSON, an object, no JSON
    boolean or null anywhere), else None: pydantic's strict validation then says what is
    wrong.

    numpy would turn `true` into 1.0 and "0.5" into 0.5, so a body with a JSON boolean, null
    or any string but those the caller expects (it counts the quotes) takes the slow path:
    checking the bytes (~1 µs) is cheaper than checking 784 values' types in Python (~25 µs).
    orjson itself refuses NaN, Infinity and numbers beyond float range (10**400, 1e999)."""
    if b"true" in raw or b"false" in raw or b"null" in raw:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if type(body) is dict else None


def _plain_array(values: Any) -> np.ndarray | None:
    """Evenly nested numbers (from `_plain_body`) as float32, or None (ragged or empty: the
    slow path says where)."""
    if type(values) is not list:
        return None
    try:
        array = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError, OverflowError):
        return None
    return None if array.size == 0 else array


# --- TensorFlow Serving's :predict body -----------------------------------------------------


def decode_predict(raw: bytes, spec: InputSpec) -> tuple[np.ndarray, str]:
    """A `:predict` body as (batch, answer key): "predictions" for `instances`, "outputs"
    for `inputs`. Raises `ApiError` or pydantic's `ValidationError` (a 400 either way)."""
    if not raw.strip():
        raise ApiError(400, "request body is empty: expected a JSON object with "
                            "'instances' or 'inputs'")
    fast = _fast_predict(raw)
    if fast is not None:
        values, where, key = fast
        return spec.as_batch(values, where), key
    body = PredictRequest.model_validate_json(raw)  # names the field of what is wrong
    values, where, key = _pick(body.signature_name, body.instances, body.inputs)
    return spec.as_batch(values, where), key


def _fast_predict(raw: bytes) -> tuple[np.ndarray, str, str] | None:
    """The numbers of a plain, well-typed body as a float32 array, or None to take the slow
    path (pydantic's strict validation, which names what is wrong). The only strings
    allowed are the keys and the signature name."""
    body = _plain_body(raw)
    if body is None:
        return None
    signature = body.get("signature_name")
    instances, inputs = body.get("instances"), body.get("inputs")
    strings = 2 * len(body) + (2 if type(signature) is str else 0) + (
        2 * len(inputs) if type(inputs) is dict else 0)
    if raw.count(b'"') != strings or not (
            type(instances) is list or type(inputs) in (list, dict)):
        return None
    values, where, key = _pick(signature, instances, inputs)
    array = _plain_array(values)
    return None if array is None else (array, where, key)


def _pick(signature: str | None, instances: Any, inputs: Any) -> tuple[Any, str, str]:
    """The image values of a predict body, where they are (for messages), the answer key."""
    if signature not in (None, "", SIGNATURE):
        raise ApiError(400, f'Serving signature name: "{signature}" not found in signature '
                            f'def (the one signature is "{SIGNATURE}")')
    if (instances is None) == (inputs is None):
        raise ApiError(400, "Missing 'inputs' or 'instances' key" if instances is None
                       else "'instances' and 'inputs' cannot both be given")
    if instances is not None:
        return instances, "instances", "predictions"
    if isinstance(inputs, dict):
        if set(inputs) != {INPUT_NAME}:
            unknown = sorted(set(inputs) - {INPUT_NAME}) or ["none"]
            raise ApiError(400, f"inputs: unknown input {unknown[0]!r} (the model's one "
                                f"input is {INPUT_NAME!r})")
        return inputs[INPUT_NAME], f"inputs.{INPUT_NAME}", "outputs"
    return inputs, "inputs", "outputs"


# --- the Open Inference Protocol v2 infer request -------------------------------------------


def decode_infer(header: bytes, binary: bytes, spec: InputSpec, model: str
                 ) -> tuple[np.ndarray, InferRequest]:
    """A v2 infer request (its JSON, and the tensor bytes after it) as (batch, request)."""
    if not header.strip():
        raise ApiError(400, "request body is empty: expected a JSON inference request")
    request = InferRequest.model_validate_json(header)  # ValidationError → 400
    return decode_inputs(spec, model, request, binary), request


def decode_inputs(spec: InputSpec, model: str, request: InferRequest, binary: bytes
                  ) -> np.ndarray:
    """The request's one input tensor as an N×H×W×C float32 batch, or a 400."""
    if len(request.inputs) != 1:
        raise ApiError(400, f"expected 1 input tensor ({INPUT_NAME!r}), got "
                            f"{len(request.inputs)}")
    tensor = request.inputs[0]
    where = f"input {INPUT_NAME!r}"
    if tensor.name != INPUT_NAME:
        raise ApiError(400, f"unexpected inference input {tensor.name!r} for model "
                            f"{model!r} (its input is {INPUT_NAME!r})")
    if tensor.datatype != "FP32":
        raise ApiError(400, f"{where}: datatype {tensor.datatype!r}, expected 'FP32'")
    shape = tuple(tensor.shape)
    if len(shape) == 3 and spec.image_shape[2] == 1:
        shape = (*shape, 1)
    if len(shape) != 4 or shape[1:] != spec.image_shape or shape[0] < 1:
        raise ApiError(400, f"{where}: shape {list(tensor.shape)}, expected "
                            f"{[-1, *spec.image_shape]} with N >= 1")
    count = int(np.prod(shape))
    size = tensor.parameters.binary_data_size if tensor.parameters else None
    if size is not None:
        if tensor.data is not None:
            raise ApiError(400, f"{where}: both data and binary_data_size")
        if size != 4 * count or len(binary) != size:
            raise ApiError(400, f"{where}: shape {list(tensor.shape)} needs {4 * count} "
                                f"bytes of FP32; binary_data_size is {size} and the body "
                                f"has {len(binary)} bytes after the JSON")
        return spec.as_batch(np.frombuffer(binary, dtype="<f4").reshape(shape), where)
    if binary:
        raise ApiError(400, f"{len(binary)} bytes after the JSON but no input has "
                            "binary_data_size")
    if tensor.data is None:
        raise ApiError(400, f"{where}: no data (nor binary_data_size)")
    try:
        flat = np.asarray(tensor.data, dtype=np.float32).ravel()
    except ValueError as exc:
        raise ApiError(400, f"{where}: data nested unevenly") from exc
    if flat.size != count:
        raise ApiError(400, f"{where}: {flat.size} values for shape {list(tensor.shape)}, "
                            f"which needs {count}")
    return spec.as_batch(flat.reshape(shape), where)


# --- /explain's JSON body -------------------------------------------------------------------


def decode_image(raw: bytes, spec: InputSpec) -> np.ndarray:
    """`POST /explain`'s JSON body `{"image": H×W or H×W×C}` as the model's H×W×C float32
    input. Raises `ApiError` or pydantic's `ValidationError` (a 400 either way)."""
    if not raw.strip():
        raise ApiError(400, "request body is empty: expected an image file (multipart "
                            "field 'file') or JSON {\"image\": ...}")
    body = _plain_body(raw)
    if body is not None and raw.count(b'"') == 2 * len(body):  # no string but the keys
        values = _plain_array(body.get("image"))
        if values is not None:
            return spec.as_batch(values, "image", one=True)[0]
    request = ExplainRequest.model_validate_json(raw)  # names the field of what is wrong
    return spec.as_batch(request.image, "image", one=True)[0]
