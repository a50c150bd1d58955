"""GET / (the page) and /web/* (its scripts and styles): public, every asset from this process."""

import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

PAGE_FILE = Path(__file__).resolve().parent / "index.html"
ASSETS_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/web"

# Everything the page loads or calls comes from this origin; `blob:` images are the photos the
# user picked, shown from the page's own memory before and after they are sent.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# Public on purpose: the page holds no data; the API calls it makes carry the user's key.
router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    """The page: pick photos and a model, see labels, boxes or masks."""
    return FileResponse(PAGE_FILE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


class _Assets(StaticFiles):
    """Static files that browsers revalidate (ETag) each time, so an upgrade is seen at once."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def assets() -> StaticFiles:
    """The page's scripts, styles and icon."""
    return _Assets(directory=ASSETS_DIR)
