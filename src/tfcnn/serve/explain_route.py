"""`POST /explain`: the prediction for one image with a heatmap of why, and the feature maps
of every convolution (the drawing page's "why?" toggle).

The body is the image: an uploaded file (multipart form field `file`, prepared as
`POST /predict` prepares it) or JSON `{"image": H×W or H×W×C nested lists in [0, 1]}` (the
model's input as it is). Query parameters: `method` (gradcam, default, the one fast enough
to follow a pen; integrated-gradients; occlusion), `target` (class name or index; default
the predicted class), `top_k`, `feature_maps`. Bad input is a 4xx `{"error": ...}` like
every other route: the JSON is decoded and its numbers checked as v1 `:predict` checks
them (`serve.inputs.decode_image`), a large body in the decoding process (`serve.offload`),
so that parsing it does not hold up the other clients.
"""

# No `from __future__ import annotations`: FastAPI reads the route's parameter types at run
# time, and some are local to `router()`.

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tfcnn.core.errors import TfcnnError
from tfcnn.core.prediction import Prediction
from tfcnn.serve.http import ERRORS, ApiError, read_body
from tfcnn.serve.inputs import decode_image
from tfcnn.serve.model import ServedModel, png_data_url
from tfcnn.serve.offload import Offloader
from tfcnn.serve.schemas import ExplainRequest

METHODS = ("gradcam", "integrated-gradients", "occlusion")
# A JSON image is at most H×W×C numbers of ~20 bytes; the app's body limit still applies.
MAX_JSON_BYTES = 10 * 2**20


class FeatureMaps(BaseModel):
    layer: str
    shape: list[int] = Field(description="H'×W'×C' of the layer's output")
    image: str = Field(description="PNG data URL: the channels as a grid of grey tiles, each "
                                   "scaled to its own range (at most 32 channels)")


class ExplainResponse(BaseModel):
    prediction: dict[str, Any] = Field(description="the `predict --json` fields: label, "
                                                   "index, probability, top_k")
    method: str
    target: str = Field(description="the class explained")
    target_index: int
    heatmap: list[list[float]] = Field(description="H×W attribution map (Grad-CAM: 0-1)")
    overlay: str = Field(description="PNG data URL, H×W RGBA: the heatmap in colour, "
                                     "transparent where it is low, to lay over `image`")
    image: str = Field(description="PNG data URL: the input as the model saw it")
    feature_maps: list[FeatureMaps] = []


BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ExplainRequest.model_json_schema()},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "the image file"}}}}}}}


def _target(target: str | None, names: tuple[str, ...]) -> int | None:
    if target is None or target == "":
        return None
    from tfcnn.explain.batch import resolve_target

    try:
        return resolve_target(target, names)
    except TfcnnError as exc:
        raise ApiError(400, str(exc)) from exc


def router(served: ServedModel, model: Any = None,
           max_body_bytes: int = MAX_JSON_BYTES, offloader: Offloader | None = None
           ) -> APIRouter:
    """The `/explain` route for `model` (default: the Keras model `served` wraps; with
    none, as for a `ServedModel` made without one, no route). `create_app` adds it
    (`tfcnn.serve.app.default_routers`). Large JSON bodies are decoded by `offloader`
    (default: the router's own, closed with the app)."""
    model = model if model is not None else served.model
    if model is None:
        return APIRouter()
    from tfcnn.explain.batch import attributions
    from tfcnn.explain.explanation import heatmap_json
    from tfcnn.explain.figures import heat_rgba, map_grid
    from tfcnn.explain.figures import png_data_url as rgba_url
    from tfcnn.explain.live import LiveExplainer

    live = LiveExplainer(model)
    spec = served.spec
    decoder = offloader if offloader is not None else Offloader()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        if offloader is None:  # the router's own decoding process
            decoder.close()

    api = APIRouter(tags=["tfcnn"], lifespan=lifespan)

    async def image_of(request: Request) -> np.ndarray:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(400, "file: missing (expected an image file in form field "
                                    "'file')")
            data = await upload.read()
            name = upload.filename or "upload"
            return await asyncio.to_thread(served.prepare_upload, data, name)
        raw = await read_body(request, max_body_bytes)
        # Small bodies inline (one 28×28 image: ~50 µs), large ones in the decoding
        # process: a 5.7 MB body held the event loop ~0.3 s (docs/benchmarks.md).
        return await decoder.run(len(raw), decode_image, raw, spec)

    def explain(image: np.ndarray, method: str, target: int | None, top_k: int,
                with_maps: bool) -> dict[str, Any]:
        result = live.explain(image, target)
        if method == "gradcam":
            if result.heatmap is None:
                raise ApiError(400, "method gradcam: the model has no convolution (use "
                                    "integrated-gradients or occlusion)")
            heat = result.heatmap
        else:
            heat = attributions(model, image[None], np.array([result.target]), method)[0]
        names = list(served.class_names)
        prediction = Prediction.from_probabilities(result.probabilities, names, top_k)
        answer = {"prediction": {k: v for k, v in prediction.to_dict().items() if k != "file"},
                  "method": method, "target": names[result.target],
                  "target_index": result.target,
                  "heatmap": heatmap_json(heat),  # rounded: no float32 artefacts
                  "overlay": rgba_url(heat_rgba(heat, signed=method != "gradcam")),
                  "image": png_data_url(image)}
        if with_maps:
            answer["feature_maps"] = [
                {"layer": name, "shape": list(maps.shape), "image": rgba_url(map_grid(maps))}
                for name, maps in result.feature_maps]
        return answer

    @api.post("/explain", response_model=ExplainResponse, responses=ERRORS,
              summary="Explain the prediction for one image", openapi_extra=BODY,
              description="The prediction, a heatmap of the pixels that made it (Grad-CAM by "
                          "default) and every convolution's feature maps. The body: an image "
                          "file (multipart field `file`, prepared as `/predict` prepares it) "
                          "or JSON `{\"image\": ...}`, the model's input as it is.")
    async def explain_route(
            request: Request,
            method: Annotated[str, Query(description="gradcam, integrated-gradients or "
                                                     "occlusion",
                                         json_schema_extra={"enum": list(METHODS)})
                              ] = "gradcam",
            target: Annotated[str | None, Query(description="class name or index to "
                                                            "explain (default: predicted)")
                              ] = None,
            top_k: Annotated[int, Query(ge=1, le=1000)] = 3,
            feature_maps: Annotated[bool, Query(description="add the feature maps")] = True
    ) -> JSONResponse:
        if method not in METHODS:
            raise ApiError(400, f"method: expected one of {', '.join(METHODS)}, "
                                f"got {method!r}")
        chosen = _target(target, served.class_names)
        image = await image_of(request)
        answer = await asyncio.to_thread(explain, image, method, chosen, top_k, feature_maps)
        return JSONResponse(answer)

    return api
