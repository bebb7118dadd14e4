"""Profile photos of users and groups [docs/graph-behaviour.md section 7]."""

from __future__ import annotations

import hashlib
import struct

from localgraph.context import ServerContext
from localgraph.errors import GraphError
from localgraph.reads import ODATA_JSON
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import DirObject
from localgraph.writes.objects import lookup

router = Router()

MAX_PHOTO_BYTES = (
    4 * 1024 * 1024
)  # "limit of 4 MB on the total size of each REST request" [docs/graph-behaviour.md section 7]
PHOTO_TYPES = ("image/jpeg", "image/png")
IMAGE_NOT_FOUND = (
    "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown."
)


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    """(width, height) of a PNG or baseline/progressive JPEG, or (None, None)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(b"\xff\xd8"):
        index = 2
        while index + 9 < len(data):
            if data[index] != 0xFF:
                index += 1
                continue
            marker = data[index + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                index += 1 if marker == 0xFF else 2
                continue
            length = struct.unpack(">H", data[index + 2 : index + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[index + 5 : index + 9])
                return width, height
            index += 2 + length
    return None, None


def _photo_owner(ctx: ServerContext, collection: str, key: str) -> DirObject:
    if collection == "users":
        return ctx.tenant.find_user(key)
    # "Group photos are not supported with application permissions" [docs/graph-behaviour.md section 7]: the pipeline refuses
    # app-only writes (localgraph.permissions.APP_ONLY_REFUSED).
    return lookup(ctx, "group", key)


def _image_not_found() -> GraphError:
    return GraphError(404, "ImageNotFound", IMAGE_NOT_FOUND)


def _put_photo(ctx: ServerContext, req: GraphRequest, collection: str, id: str) -> GraphResponse:
    """Binary body with ``Content-Type: image/jpeg`` (image/png accepted too) -> 200 [docs/graph-behaviour.md section 7]. Over
    4 MB: 413 (code UNCONFIRMED); empty or another type: 400 (codes and texts UNCONFIRMED)."""
    owner = _photo_owner(ctx, collection, id)
    content_type = (req.header("Content-Type") or "").split(";", 1)[0].strip().lower()
    if len(req.body) > MAX_PHOTO_BYTES:
        raise GraphError(
            413, "RequestEntityTooLarge", "The request is larger than the 4 MB limit for a photo."
        )
    if content_type not in PHOTO_TYPES:
        raise GraphError(
            400,
            "BadRequest",
            f"Content type '{content_type or 'none'}' is not supported for a profile photo. Use image/jpeg.",
        )
    if not req.body:
        raise GraphError(400, "BadRequest", "The photo is empty.")
    owner.photo = (content_type, bytes(req.body))
    return GraphResponse(200)


def _get_photo_value(ctx: ServerContext, req: GraphRequest, collection: str, id: str) -> GraphResponse:
    owner = _photo_owner(ctx, collection, id)
    if owner.photo is None:
        raise _image_not_found()
    content_type, data = owner.photo
    return GraphResponse(200, data, content_type=content_type)


def _get_photo(ctx: ServerContext, req: GraphRequest, collection: str, id: str) -> GraphResponse:
    """The profilePhoto entity: ``@odata.mediaContentType``, id ``default``, width and height."""
    owner = _photo_owner(ctx, collection, id)
    if owner.photo is None:
        raise _image_not_found()
    content_type, data = owner.photo
    width, height = _image_size(data)
    body = {
        "@odata.context": f"{req.base_url}/$metadata#{collection}('{owner.id}')/photo/$entity",
        "@odata.mediaContentType": content_type,
        "@odata.mediaEtag": f'W/"{hashlib.sha256(data).hexdigest()}"',
        "id": "default",
        "height": height,
        "width": width,
    }
    return GraphResponse(200, body, content_type=ODATA_JSON)


def _delete_photo(ctx: ServerContext, req: GraphRequest, collection: str, id: str) -> GraphResponse:
    owner = _photo_owner(ctx, collection, id)
    if owner.photo is None:
        raise _image_not_found()
    owner.photo = None
    return GraphResponse(204)


def _register_photo(collection: str) -> None:
    value = f"/{collection}/{{id}}/photo/$value"

    def put(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        return _put_photo(ctx, req, collection, id)

    def get_value(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        return _get_photo_value(ctx, req, collection, id)

    def get(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        return _get_photo(ctx, req, collection, id)

    def delete(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        return _delete_photo(ctx, req, collection, id)

    router.route("PUT", value)(put)
    router.route("PATCH", value)(put)
    router.route("GET", value)(get_value)
    router.route("DELETE", value)(delete)
    router.route("GET", f"/{collection}/{{id}}/photo")(get)


_register_photo("users")
_register_photo("groups")
