"""Open Inference Protocol v2 (KServe, Triton) routes under /v2, over the same services."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from app.api import health
from app.api.deps import ApiKeyDep, RegistryDep, SettingsDep, StateDep, require_scope
from app.api.tensor_codec import HEADER_LENGTH, decode_request, encode_response
from app.api.uploads import IMAGE_FIELD
from app.errors import InvalidRequest, PayloadTooLarge, TooManyImages
from app.runtime.registry import ServedModel
from app.services.open_inference import (
    IMAGE_INPUT,
    InferContext,
    infer_tensors,
    output_specs,
)
from app.services.pipeline import ReservedUploads
from app.services.uploads import Upload

PROTOCOL_VERSION_EXTENSIONS = ["binary_tensor_data"]

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
models_router = APIRouter(
    prefix="/v2", tags=["open inference protocol"], dependencies=[Depends(require_scope("v2"))]
)


class ServerMetadataResponse(BaseModel):
    """`GET /v2`."""

    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    """`GET /v2/health/live`."""

    live: bool


class ReadyResponse(BaseModel):
    """`GET /v2/health/ready`, `GET /v2/models/{name}/ready`."""

    ready: bool


class TensorMetadata(BaseModel):
    """An input or output of a model: name, datatype, shape (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    """`GET /v2/models/{name}`."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


@router.get("", response_model=ServerMetadataResponse)
async def server_metadata(request: Request) -> ServerMetadataResponse:
    """The server's name, version and protocol extensions."""
    return ServerMetadataResponse(
        name=request.app.title, version=request.app.version, extensions=PROTOCOL_VERSION_EXTENSIONS
    )


@router.get("/health/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """As /healthz."""
    return LiveResponse(live=True)


@router.get("/health/ready", response_model=ReadyResponse)
async def ready(state: StateDep) -> ReadyResponse:
    """As /readyz: 503 until every model is warmed up, and while draining."""
    await health.readyz(state)
    return ReadyResponse(ready=True)


@models_router.get("/models/{name}", response_model=ModelMetadataResponse)
async def model_metadata(name: str, registry: RegistryDep) -> ModelMetadataResponse:
    """The model's input (encoded images) and typed outputs."""
    card = registry.get(name).card
    return ModelMetadataResponse(
        name=card.name,
        versions=[card.version],
        platform="pytorch_torchscript",
        inputs=[TensorMetadata(name=IMAGE_INPUT, datatype="BYTES", shape=[-1])],
        outputs=[
            TensorMetadata(name=out, datatype=kind, shape=shape)
            for out, kind, shape in output_specs(card)
        ],
    )


@models_router.get("/models/{name}/ready", response_model=ReadyResponse)
async def model_ready(name: str, registry: RegistryDep) -> ReadyResponse:
    """200 when the model is loaded and warmed up (the registry holds only such models)."""
    output_specs(registry.get(name).card)
    return ReadyResponse(ready=True)


async def get_model(name: str, registry: RegistryDep, key: ApiKeyDep) -> ServedModel:
    """The named model (403 if the key may not use it); 503 at once when its queue is full."""
    served = registry.get(name)
    key.require_model(served.name)
    output_specs(served.card)
    served.batcher.refuse_if_full()
    return served


@models_router.post("/models/{name}/infer", response_class=Response)
async def infer(
    request: Request,
    served: Annotated[ServedModel, Depends(get_model)],
    state: StateDep,
    settings: SettingsDep,
) -> Response:
    """Classify or detect: encoded images in BYTES input IMAGE, results as typed outputs."""
    body, inputs = decode_request(await request.body(), request.headers.get(HEADER_LENGTH))
    images = _images(inputs, settings.max_images_per_request, settings.max_image_bytes)
    context = InferContext(
        preparer=state.preparer, timeout_s=settings.request_timeout_s, metrics=state.metrics
    )
    with served.batcher.reserve(len(images)) as reservation:
        tensors = await infer_tensors(
            ReservedUploads(images=images, reservation=reservation),
            served,
            body.parameters,
            context,
        )
    names = {tensor.name for tensor in tensors}
    wanted = [output.name for output in body.outputs] if body.outputs else sorted(names)
    unknown = sorted(set(wanted) - names)
    if unknown:
        raise InvalidRequest(f"No output(s) named {', '.join(unknown)}.", outputs=sorted(names))
    binary = _binary_outputs(body.parameters, body.outputs or [], wanted)
    content, headers = encode_response(
        model_name=served.name,
        model_version=served.card.version,
        request_id=body.id,
        outputs=[tensor for tensor in tensors if tensor.name in wanted],
        binary=binary,
    )
    return Response(content, headers=headers)


def _images(inputs: list[Any], limit: int, max_bytes: int) -> list[Upload]:
    if [tensor.name for tensor in inputs] != [IMAGE_INPUT] or inputs[0].datatype != "BYTES":
        raise InvalidRequest(
            f"Send one BYTES input named {IMAGE_INPUT!r}: the encoded images "
            f"(as the {IMAGE_FIELD!r} files of /classify and /detect)."
        )
    elements: list[bytes] = inputs[0].elements
    if not elements:
        raise InvalidRequest(f"Input {IMAGE_INPUT!r} holds no image.")
    if len(elements) > limit:
        raise TooManyImages(f"At most {limit} images per request.", limit=limit)
    return [
        Upload(filename=None, data=data)
        if len(data) <= max_bytes
        else Upload(
            filename=None,
            data=b"",
            error=PayloadTooLarge(
                f"The image has {len(data)} bytes; the limit is {max_bytes}.",
                bytes=len(data),
                limit=max_bytes,
            ),
        )
        for data in elements
    ]


def _binary_outputs(
    parameters: dict[str, Any], requested: list[Any], wanted: list[str]
) -> set[str]:
    """Outputs sent as raw bytes: each one's `binary_data`, else the request's default."""
    default = parameters.get("binary_data_output", False) is True
    chosen = {output.name: output.parameters.get("binary_data", default) for output in requested}
    return {name for name in wanted if chosen.get(name, default) is True}
