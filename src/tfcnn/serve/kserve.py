"""The Open Inference Protocol v2 (KServe, NVIDIA Triton) over REST: `/v2/...`.

Health, server and model metadata, readiness, and `infer`: one FP32 input tensor `images`
of shape [N, H, W, C] (values in [0, 1]) gives one FP32 output tensor `probabilities` of
shape [N, classes]. Tensor data travels as JSON (flat row-major or nested lists) or, with
Triton's binary tensor data extension, as raw little-endian bytes after the JSON header
(its length in the `Inference-Header-Content-Length` header), which is what `tritonclient`
sends by default. A request body may be gzip- or deflate-compressed.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' parameter types
# at run time, and some are local to `router()`.

from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Path, Request, Response

from tfcnn import __version__
from tfcnn.serve.batching import MicroBatcher
from tfcnn.serve.http import ERRORS, ApiError, json_response, read_body
from tfcnn.serve.inputs import INPUT_NAME, OUTPUT_NAME, UNKNOWN_OUTPUT, decode_infer
from tfcnn.serve.model import ServedModel
from tfcnn.serve.offload import Offloader
from tfcnn.serve.schemas import (
    InferRequest,
    InferResponse,
    LiveResponse,
    ModelMetadataV2Response,
    ModelReadyResponse,
    ReadyResponse,
    ServerMetadataResponse,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
# The request body's schema for /openapi.json: the route reads the body itself (it may be
# JSON followed by binary tensors), so FastAPI cannot derive it from a parameter.
INFER_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": "JSON header then tensor bytes"}}}}


def _split(body: bytes, header: str | None) -> tuple[bytes, bytes]:
    if header is None:
        return body, b""
    text = header.strip()
    if not text.isdigit() or int(text) > len(body):
        raise ApiError(400, f"{HEADER_LENGTH}: {header!r} is not a length within the "
                            f"{len(body)}-byte body")
    return body[:int(text)], body[int(text):]


def _wanted_outputs(served: ServedModel, request: InferRequest) -> dict[str, bool]:
    """Output name → binary, for the outputs the request asks for (default: both)."""
    default_binary = bool(request.parameters and request.parameters.binary_data_output)
    if not request.outputs:
        return {OUTPUT_NAME: default_binary, UNKNOWN_OUTPUT: default_binary}
    wanted: dict[str, bool] = {}
    for output in request.outputs:
        if output.name not in (OUTPUT_NAME, UNKNOWN_OUTPUT):
            raise ApiError(400, f"unexpected inference output {output.name!r} for model "
                                f"{served.name!r} (its outputs are {OUTPUT_NAME!r} and "
                                f"{UNKNOWN_OUTPUT!r})")
        parameters = output.parameters
        if parameters and parameters.classification:
            raise ApiError(400, "the classification extension is not supported: ask for "
                                f"{OUTPUT_NAME!r} and take the arg max")
        binary = default_binary
        if parameters and parameters.binary_data is not None:
            binary = parameters.binary_data
        wanted[output.name] = binary
    return wanted


def encode_outputs(served: ServedModel, request: InferRequest, probs: np.ndarray,
                   unknown: np.ndarray) -> Response:
    """The response, JSON or (if any output asks for binary data) JSON then bytes:
    `probabilities` FP32 [N, classes] and `unknown` BOOL [N] (True: unlike the training
    images; the label is still the arg max), or the ones the request names."""
    tensors = {OUTPUT_NAME: ("FP32", probs.astype("<f4")),
               UNKNOWN_OUTPUT: ("BOOL", np.asarray(unknown, dtype=bool))}
    outputs, payload = [], b""
    for name, binary in _wanted_outputs(served, request).items():
        datatype, values = tensors[name]
        output: dict[str, Any] = {"name": name, "datatype": datatype,
                                  "shape": list(values.shape)}
        if binary:
            data = values.tobytes()
            payload += data
            output["parameters"] = {"binary_data_size": len(data)}
        else:
            output["data"] = values.ravel().tolist()
        outputs.append(output)
    answer: dict[str, Any] = {"model_name": served.name, "model_version": served.version,
                              "outputs": outputs}
    if request.id is not None:
        answer["id"] = request.id
    if not payload:
        return json_response(answer)
    header = orjson.dumps(answer)
    return Response(header + payload, media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


def router(served: ServedModel, batcher: MicroBatcher, max_body_bytes: int,
           offloader: Offloader) -> APIRouter:
    api = APIRouter(tags=["Open Inference Protocol v2 (KServe, Triton)"])
    Name = Annotated[str, Path(description=f"the model's name (this server serves "
                                           f"{served.name!r})", examples=[served.name],
                               json_schema_extra={"enum": [served.name]})]
    Version = Annotated[str, Path(description="the model's version (always 1)",
                                  examples=[served.version],
                                  json_schema_extra={"enum": [served.version]})]

    def check(name: str, version: str | None) -> None:
        if name != served.name or version not in (None, "", served.version):
            shown = name if version is None else f"{name}' version '{version}"
            raise ApiError(404, f"Request for unknown model: '{shown}' is not found")

    def metadata(name: str, version: str | None) -> dict[str, Any]:
        check(name, version)
        return {"name": served.name, "versions": [served.version],
                "platform": "tensorflow_keras",
                "inputs": [{"name": INPUT_NAME, "datatype": "FP32",
                            "shape": [-1, *served.image_shape]}],
                "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32",
                             "shape": [-1, served.n_classes]},
                            {"name": UNKNOWN_OUTPUT, "datatype": "BOOL", "shape": [-1]}]}

    async def infer(name: str, version: str | None, request: Request) -> Response:
        check(name, version)
        body = await read_body(request, max_body_bytes)
        header, binary = _split(body, request.headers.get(HEADER_LENGTH))
        # JSON tensor data can be megabytes: decoded off the event loop (serve.offload).
        batch, parsed = await offloader.run(len(header), decode_infer, header, binary,
                                            served.spec, served.name)
        probs, unknown = served.split(await batcher.run(batch))
        return encode_outputs(served, parsed, probs, unknown)

    @api.get("/v2", response_model=ServerMetadataResponse, summary="Server metadata")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "tfcnn", "version": __version__,
                "extensions": ["binary_tensor_data"]}

    @api.get("/v2/health/live", response_model=LiveResponse, summary="Server live")
    async def live() -> dict[str, Any]:
        return {"live": True}

    @api.get("/v2/health/ready", response_model=ReadyResponse, summary="Server ready")
    async def ready() -> dict[str, Any]:
        return {"ready": True}

    @api.get("/v2/models/{name}", response_model=ModelMetadataV2Response, responses=ERRORS,
             summary="Model metadata")
    async def model_metadata(name: Name) -> dict[str, Any]:
        return metadata(name, None)

    @api.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadataV2Response,
             responses=ERRORS, summary="Model metadata (one version)")
    async def model_version_metadata(name: Name, version: Version) -> dict[str, Any]:
        return metadata(name, version)

    @api.get("/v2/models/{name}/ready", response_model=ModelReadyResponse, responses=ERRORS,
             summary="Model ready")
    async def model_ready(name: Name) -> dict[str, Any]:
        check(name, None)
        return {"name": served.name, "ready": True}

    @api.get("/v2/models/{name}/versions/{version}/ready", response_model=ModelReadyResponse,
             responses=ERRORS, summary="Model ready (one version)")
    async def model_version_ready(name: Name, version: Version) -> dict[str, Any]:
        check(name, version)
        return {"name": served.name, "ready": True}

    infer_doc = (f"Class probabilities: input {INPUT_NAME!r} FP32 "
                 f"[N, {', '.join(map(str, served.image_shape))}] in [0, 1] → output "
                 f"{OUTPUT_NAME!r} FP32 [N, {served.n_classes}] and {UNKNOWN_OUTPUT!r} BOOL "
                 "[N] (True: unlike the training images). JSON data, or the binary "
                 "tensor data extension (tritonclient's default).")

    @api.post("/v2/models/{name}/infer", response_model=InferResponse,
              response_model_exclude_none=True, responses=ERRORS, openapi_extra=INFER_BODY,
              summary="Infer", description=infer_doc)
    async def model_infer(name: Name, request: Request) -> Response:
        return await infer(name, None, request)

    @api.post("/v2/models/{name}/versions/{version}/infer", response_model=InferResponse,
              response_model_exclude_none=True, responses=ERRORS, openapi_extra=INFER_BODY,
              summary="Infer (one version)", description=infer_doc)
    async def model_version_infer(name: Name, version: Version, request: Request
                                  ) -> Response:
        return await infer(name, version, request)

    return api
