"""TensorFlow Serving's REST API (`/v1/models/...`): model status, metadata and predict.

The answers have TensorFlow Serving's shapes, so its clients and tutorials work unchanged:
`{"instances": [...]}` (row format) gives `{"predictions": [...]}`, `{"inputs": ...}`
(columnar, a batch or `{"images": batch}`) gives `{"outputs": [...]}`, and errors are
`{"error": "..."}`. The one signature is `serving_default`: input `images`
(-1×H×W×C float), output `probabilities` (-1×classes float).
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' parameter types
# at run time, and some are local to `router()`.

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from tfcnn.serve.batching import MicroBatcher
from tfcnn.serve.http import ERRORS, ApiError, json_response, read_body
from tfcnn.serve.inputs import (
    INPUT_NAME,
    OUTPUT_NAME,
    SIGNATURE,
    UNKNOWN_KEY,
    decode_predict,
)
from tfcnn.serve.model import ServedModel
from tfcnn.serve.offload import Offloader
from tfcnn.serve.schemas import (
    ModelMetadataResponse,
    ModelStatusResponse,
    PredictResponse,
)

# The predict body is read by hand, not by FastAPI: TensorFlow Serving takes JSON whatever the
# Content-Type (curl -d sends a form's type), and FastAPI would not parse that as JSON.
PREDICT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}}}


def _tensor_info(name: str, dims: list[int]) -> dict[str, Any]:
    return {"dtype": "DT_FLOAT", "name": f"{SIGNATURE}_{name}:0",
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims],
                             "unknown_rank": False}}


def router(served: ServedModel, batcher: MicroBatcher, max_body_bytes: int,
           offloader: Offloader) -> APIRouter:
    api = APIRouter(tags=["TensorFlow Serving REST API (v1)"])
    name_doc = f"the model's name (this server serves {served.name!r})"
    Name = Annotated[str, Path(description=name_doc, examples=[served.name],
                               json_schema_extra={"enum": [served.name]})]
    Version = Annotated[str, Path(description="the model's version (always 1)",
                                  examples=[served.version],
                                  json_schema_extra={"enum": [served.version]})]

    def check(name: str, version: str | None) -> None:
        if name != served.name:
            raise ApiError(404, f"Servable not found for request: Latest({name})")
        if version is not None and version != served.version:
            raise ApiError(404, f"Servable not found for request: Specific({name}, {version})")

    def status(name: str, version: str | None) -> dict[str, Any]:
        check(name, version)
        return {"model_version_status": [{
            "version": served.version, "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(name: str, version: str | None) -> dict[str, Any]:
        check(name, version)
        signature = {"inputs": {INPUT_NAME: _tensor_info(INPUT_NAME, [-1, *served.image_shape])},
                     "outputs": {OUTPUT_NAME: _tensor_info(OUTPUT_NAME, [-1, served.n_classes])},
                     "method_name": "tensorflow/serving/predict"}
        return {"model_spec": {"name": served.name, "signature_name": "",
                               "version": served.version},
                "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}}}

    spec = served.spec

    async def predict(name: str, version: str | None, request: Request) -> Response:
        check(name, version)
        raw = await read_body(request, max_body_bytes)
        # Small bodies inline (microseconds), large ones in a worker process: a 9 MiB body
        # would otherwise hold the event loop (and every other client) for a second.
        batch, key = await offloader.run(len(raw), decode_predict, raw, spec)
        probs, unknown = served.split(await batcher.run(batch))
        return json_response({key: probs.tolist(), UNKNOWN_KEY: unknown.tolist()})

    # Each operation with and without /versions/{version}, as TensorFlow Serving has them.
    @api.get("/v1/models/{name}", response_model=ModelStatusResponse, responses=ERRORS,
             summary="Model status")
    async def model_status(name: Name) -> dict[str, Any]:
        return status(name, None)

    @api.get("/v1/models/{name}/versions/{version}", response_model=ModelStatusResponse,
             responses=ERRORS, summary="Model status (one version)")
    async def model_version_status(name: Name, version: Version) -> dict[str, Any]:
        return status(name, version)

    @api.get("/v1/models/{name}/metadata", response_model=ModelMetadataResponse,
             responses=ERRORS, summary="Model metadata (signature_def)")
    async def model_metadata(name: Name) -> dict[str, Any]:
        return metadata(name, None)

    @api.get("/v1/models/{name}/versions/{version}/metadata",
             response_model=ModelMetadataResponse, responses=ERRORS,
             summary="Model metadata (one version)")
    async def model_version_metadata(name: Name, version: Version) -> dict[str, Any]:
        return metadata(name, version)

    predict_doc = ("Class probabilities for a batch of images: "
                   f"{served.shape_text()} numbers in [0, 1] each.")

    @api.post("/v1/models/{name}:predict", response_model=PredictResponse,
              response_model_exclude_none=True, responses=ERRORS, summary="Predict",
              description=predict_doc, openapi_extra=PREDICT_BODY)
    async def model_predict(name: Name, request: Request) -> Response:
        return await predict(name, None, request)

    @api.post("/v1/models/{name}/versions/{version}:predict", response_model=PredictResponse,
              response_model_exclude_none=True, responses=ERRORS,
              summary="Predict (one version)", description=predict_doc,
              openapi_extra=PREDICT_BODY)
    async def model_version_predict(name: Name, version: Version, request: Request
                                    ) -> Response:
        return await predict(name, version, request)

    return api
