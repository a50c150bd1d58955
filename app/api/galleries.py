"""Reference galleries: PUT/GET/DELETE galleries, add and delete products, match."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.api.deps import (
    AddReferencesCallDep,
    GalleriesDep,
    GalleryCreateDep,
    GalleryName,
    MatchCallDep,
    require_scope,
)
from app.api.responses import ERROR_RESPONSES
from app.api.uploads import IMAGE_REQUEST_BODY
from app.galleries.records import NAME_PATTERN
from app.schemas import (
    AddReferencesResponse,
    DeleteProductResponse,
    GalleriesResponse,
    GalleryResponse,
    MatchResponse,
)
from app.services import galleries as service
from app.services.matching import match_uploads

router = APIRouter(
    prefix="/galleries",
    tags=["galleries"],
    responses=ERROR_RESPONSES,
)
# Reading and matching need galleries:read; creating, adding and deleting galleries:write.
READ = [Depends(require_scope("galleries:read"))]
WRITE = [Depends(require_scope("galleries:write"))]

ProductId = Annotated[
    str, Path(pattern=NAME_PATTERN, description="1-128 characters of [A-Za-z0-9._-]")
]


@router.put("/{gallery}", response_model=GalleryResponse, dependencies=WRITE)
async def create_gallery(
    gallery: GalleryName,
    body: GalleryCreateDep,
    services: GalleriesDep,
    response: Response,
) -> GalleryResponse:
    """Create a gallery bound to an embedding model (idempotent; 409 with another model)."""
    described, created = await service.create_gallery(services, gallery, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return described


@router.get("", response_model=GalleriesResponse, dependencies=READ)
async def list_galleries(services: GalleriesDep) -> GalleriesResponse:
    """Every gallery with its model, threshold and size."""
    return await service.list_galleries(services)


@router.get("/{gallery}", response_model=GalleryResponse, dependencies=READ)
async def describe_gallery(gallery: GalleryName, services: GalleriesDep) -> GalleryResponse:
    """One gallery and its products with their reference counts."""
    return await service.describe_gallery(services, gallery)


@router.delete("/{gallery}", status_code=status.HTTP_204_NO_CONTENT, dependencies=WRITE)
async def delete_gallery(gallery: GalleryName, services: GalleriesDep) -> None:
    """Remove a gallery and all its products."""
    await service.delete_gallery(services, gallery)


@router.post(
    "/{gallery}/products/{product_id}/references",
    response_model=AddReferencesResponse,
    response_model_exclude_none=True,
    openapi_extra=IMAGE_REQUEST_BODY,
    # The key and its scope are checked by the call's one dependency (app/api/deps.py).
)
async def add_references(
    call: AddReferencesCallDep, product_id: ProductId
) -> AddReferencesResponse:
    """Add reference photos of a product (multipart `image` fields); all usable ones or none."""
    return await service.add_references(call.services, call.target, product_id, call.uploads)


@router.delete(
    "/{gallery}/products/{product_id}", response_model=DeleteProductResponse, dependencies=WRITE
)
async def delete_product(
    gallery: GalleryName, product_id: ProductId, services: GalleriesDep
) -> DeleteProductResponse:
    """Remove a product and its reference photos."""
    return await service.delete_product(services, gallery, product_id)


@router.post(
    "/{gallery}/match",
    response_model=MatchResponse,
    response_model_exclude_none=True,
    openapi_extra=IMAGE_REQUEST_BODY,
    # The key and its scope are checked by the call's one dependency (app/api/deps.py).
)
async def match(
    call: MatchCallDep,
    *,
    top_k: Annotated[int, Query(ge=1, le=100, description="Products per image.")] = 5,
    threshold: Annotated[
        float | None,
        Query(
            ge=-1.0, le=1.0, description="Cosine similarity for `match` (default: the gallery's)."
        ),
    ] = None,
    explain: Annotated[
        bool, Query(description="Add a heat map of where the image resembled its best match.")
    ] = False,
) -> MatchResponse:
    """Match images against the gallery's products (multipart `image` fields, or a raw body)."""
    return await match_uploads(
        call.services, call.target, call.uploads, top_k=top_k, threshold=threshold, explain=explain
    )
