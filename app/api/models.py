"""GET /models and GET /models/{name}: the served models' cards."""

from fastapi import APIRouter, Depends

from app.api.deps import RegistryDep, SettingsDep, require_scope
from app.api.responses import ERROR_RESPONSES
from app.runtime.device import describe_device
from app.runtime.registry import ModelSet, ServedModel
from app.schemas import ModelDescription, ModelsResponse, SignatureDescription
from app.services.model_admin import describe_refused

router = APIRouter(tags=["models"], dependencies=[Depends(require_scope("models"))])


@router.get("/models", response_model=ModelsResponse, responses=ERROR_RESPONSES)
async def list_models(registry: RegistryDep, settings: SettingsDep) -> ModelsResponse:
    """Every served version of every model, which one each name means, the refused folders."""
    models = registry.current
    return ModelsResponse(
        device=f"{registry.device} ({describe_device(registry.device)})",
        default_classifier=settings.default_classifier,
        default_detector=settings.default_detector,
        default_segmenter=settings.default_segmenter,
        signatures_checked=registry.signatures_checked,
        refused=[describe_refused(item) for item in models.refused],
        aliases=dict(models.pins),
        models=[_describe(served, models) for served in registry.models],
    )


@router.get("/models/{name}", response_model=ModelDescription, responses=ERROR_RESPONSES)
async def get_model(name: str, registry: RegistryDep) -> ModelDescription:
    """One model's card: `name` (the version it means now) or `name@version`."""
    models = registry.current
    return _describe(models.resolve(name), models)


def _describe(served: ServedModel, models: ModelSet) -> ModelDescription:
    return ModelDescription(
        model=served.ref,
        default=models.is_default(served),
        folder=served.folder,
        card=served.card,
        sha256=served.loaded.sha256,
        device=str(served.loaded.device),
        max_batch_size=served.batcher.policy.max_batch_size,
        calibrated=served.card.calibration is not None,
        tuning=served.tuning,
        precision=served.precision,
        signature=SignatureDescription(
            status=served.loaded.signature.status,
            key_name=served.loaded.signature.key_name,
            key_id=served.loaded.signature.key_id,
        ),
    )
