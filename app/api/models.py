"""GET /models and GET /models/{name}: the served models' cards."""

from fastapi import APIRouter, Depends

from app.api.deps import RegistryDep, SettingsDep, require_scope
from app.api.responses import ERROR_RESPONSES
from app.runtime.device import describe_device
from app.runtime.registry import ServedModel
from app.schemas import (
    ModelDescription,
    ModelsResponse,
    RefusedModelDescription,
    SignatureDescription,
)

router = APIRouter(tags=["models"], dependencies=[Depends(require_scope("models"))])


@router.get("/models", response_model=ModelsResponse, responses=ERROR_RESPONSES)
async def list_models(registry: RegistryDep, settings: SettingsDep) -> ModelsResponse:
    """Every served model, with the device it runs on."""
    return ModelsResponse(
        device=f"{registry.device} ({describe_device(registry.device)})",
        default_classifier=settings.default_classifier,
        default_detector=settings.default_detector,
        default_segmenter=settings.default_segmenter,
        signatures_checked=registry.signatures_checked,
        refused=[
            RefusedModelDescription(folder=item.folder, reason=item.reason)
            for item in registry.refused
        ],
        models=[_describe(served) for served in registry.models],
    )


@router.get("/models/{name}", response_model=ModelDescription, responses=ERROR_RESPONSES)
async def get_model(name: str, registry: RegistryDep) -> ModelDescription:
    """One model's card."""
    return _describe(registry.get(name))


def _describe(served: ServedModel) -> ModelDescription:
    return ModelDescription(
        card=served.card,
        sha256=served.loaded.sha256,
        device=str(served.loaded.device),
        max_batch_size=served.batcher.policy.max_batch_size,
        calibrated=served.card.calibration is not None,
        tuning=served.tuning,
        signature=SignatureDescription(
            status=served.loaded.signature.status,
            key_name=served.loaded.signature.key_name,
            key_id=served.loaded.signature.key_id,
        ),
    )
