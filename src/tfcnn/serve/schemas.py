"""The JSON of the serving APIs as pydantic models: what `/openapi.json` documents and what
request bodies are validated against.

Pixels are strict JSON numbers in [0, 1] (no strings, booleans, NaN, infinities or integers
too large for a float), so a malformed request fails here with a message naming the field,
before any array is built. `Pixel` is the one definition of a valid number for every API
(v1 `:predict`, v2 `infer`, `/explain`).
Shapes (28×28, batch sizes, data lengths) depend on the served model and are checked by
the routes, which know it. TensorFlow Serving's models follow its REST API
(`/v1/models/...`); the `Infer*` and v2 models follow the Open Inference Protocol (KServe v2).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Strict, Tag
from typing_extensions import TypeAliasType

Pixel = Annotated[float, Strict(), Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _image_kind(value: Any) -> str:
    # Pick the branch by looking at the first pixel, so only one branch is validated (a
    # plain union would validate both, and report both branches' errors). The tags are
    # not identifiers, so error messages leave them out of the field's path.
    try:
        return "H×W×C" if isinstance(value[0][0], list) else "H×W"
    except (TypeError, IndexError, KeyError):
        return "H×W"


Image = Annotated[
    Annotated[list[list[Pixel]], Tag("H×W")] | Annotated[list[list[list[Pixel]]], Tag("H×W×C")],
    Discriminator(_image_kind),
    Field(description="one image: rows of pixels (H×W), or rows of pixels of channels "
                      "(H×W×C), each value in [0, 1]"),
]


def _inputs_kind(value: Any) -> str:
    return "{name: batch}" if isinstance(value, dict) else "[batch]"


Columns = Annotated[
    Annotated[list[Image], Tag("[batch]")]
    | Annotated[dict[str, list[Image]], Tag("{name: batch}")],
    Discriminator(_inputs_kind),
]


class ErrorResponse(BaseModel):
    """Every error, in every API: one message (TensorFlow Serving's and Triton's form)."""

    error: str = Field(examples=["Servable not found for request: Latest(other)"])


# --- TensorFlow Serving REST API (v1) ----------------------------------------------------


class PredictRequest(BaseModel):
    """`instances` (row format: one image per entry) or `inputs` (columnar: the batch, or
    `{"images": batch}`); exactly one of the two."""

    signature_name: str | None = Field(None, examples=["serving_default"])
    instances: list[Image] | None = None
    inputs: Columns | None = None


class PredictResponse(BaseModel):
    """`predictions` answers `instances`; `outputs` answers `inputs`. One row of class
    probabilities per image; `unknown`, one flag per image: unlike the training images."""

    predictions: list[list[float]] | None = None
    outputs: list[list[float]] | None = None
    unknown: list[bool] | None = None


class ModelStatus(BaseModel):
    error_code: str = "OK"
    error_message: str = ""


class ModelVersionStatus(BaseModel):
    version: str
    state: str
    status: ModelStatus


class ModelStatusResponse(BaseModel):
    model_version_status: list[ModelVersionStatus]


class TensorShapeDim(BaseModel):
    size: str
    name: str = ""


class TensorShape(BaseModel):
    dim: list[TensorShapeDim]
    unknown_rank: bool = False


class TensorInfo(BaseModel):
    dtype: str
    tensor_shape: TensorShape
    name: str


class SignatureDef(BaseModel):
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    method_name: str


class SignatureDefMap(BaseModel):
    signature_def: dict[str, SignatureDef]


class ModelSpec(BaseModel):
    name: str
    signature_name: str
    version: str


class MetadataBlock(BaseModel):
    signature_def: SignatureDefMap


class ModelMetadataResponse(BaseModel):
    model_spec: ModelSpec
    metadata: MetadataBlock


# --- Open Inference Protocol v2 (KServe, Triton) -----------------------------------------



def _data_kind(value: Any) -> str:
    # As for images: one branch validated per value, so that a bad number inside nested
    # data is named where it is (data[0][1]), not reported as a row that is not a number.
    return "[nested]" if isinstance(value, list) else "(value)"


TensorData = TypeAliasType("TensorData", list[Annotated[
    Annotated[Pixel, Tag("(value)")] | Annotated["TensorData", Tag("[nested]")],
    Discriminator(_data_kind)]])
Dim = Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)]


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataV2Response(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InputParameters(BaseModel):
    """`binary_data_size`: the tensor's bytes follow the JSON (binary tensor extension)."""

    model_config = ConfigDict(extra="allow")
    binary_data_size: Annotated[int, Strict(), Field(ge=0)] | None = None


class OutputParameters(BaseModel):
    """`binary_data`: send this output as raw little-endian bytes after the JSON."""

    model_config = ConfigDict(extra="allow")
    binary_data: Annotated[bool, Strict()] | None = None
    classification: Annotated[int, Strict()] | None = None


class RequestParameters(BaseModel):
    """`binary_data_output`: send every output as raw bytes after the JSON."""

    model_config = ConfigDict(extra="allow")
    binary_data_output: Annotated[bool, Strict()] | None = None


class InferInputTensor(BaseModel):
    name: str = Field(examples=["images"])
    shape: list[Dim] = Field(examples=[[1, 28, 28, 1]])
    datatype: str = Field(examples=["FP32"])
    parameters: InputParameters | None = None
    data: TensorData | None = Field(
        None, description="the values in row-major order, flat or nested; absent when "
                          "the parameter binary_data_size says they follow the JSON")


class InferRequestedOutput(BaseModel):
    name: str = Field(examples=["probabilities"])
    parameters: OutputParameters | None = None


class InferRequest(BaseModel):
    """A JSON inference request; with the binary tensor extension, the JSON is the first
    `Inference-Header-Content-Length` bytes of the body and the tensors' bytes follow."""

    id: str | None = None
    parameters: RequestParameters | None = None
    inputs: list[InferInputTensor]
    outputs: list[InferRequestedOutput] | None = None


class InferOutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[float] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutputTensor]


# --- tfcnn's own: the page's upload API, /explain's JSON body and the model description ------


class ExplainRequest(BaseModel):
    """`POST /explain`'s JSON body: the model's input for one image, as it is (no
    preprocessing), its pixels checked as every API checks them."""

    image: Image


class TopK(BaseModel):
    label: str
    probability: float


class UploadAnswer(BaseModel):
    """As `tfcnn predict --json` gives for one file; `image` only when asked for."""

    file: str
    label: str
    index: int
    probability: float
    unknown: bool = Field(description="the image is unlike the model's training images "
                                      "(its fitted rule); the label is its best guess")
    top_k: list[TopK]
    image: str | None = Field(None, description="the model's input, as a PNG data URL")


class BatchingStats(BaseModel):
    max_batch: int
    window_ms: float = Field(description="--batch-window-ms, kept for compatibility: the "
                                         "batcher no longer waits for a batch to fill")
    requests: int = Field(description="inference requests since start")
    batches: int = Field(description="model calls that served them")
    images: int


class ModelInfo(BaseModel):
    name: str
    version: str
    dataset: str
    class_names: list[str]
    image_shape: list[int]
    preprocessing: str = Field(description='"mnist" (digits: the page offers drawing) or '
                                           '"scale"')
    max_body_bytes: int
    runtime: str = Field(description='what runs the model: "litert" (the LiteRT interpreter, '
                                     'when it agrees with Keras within 1e-5) or "graph" '
                                     '(TensorFlow)')
    batching: BatchingStats
