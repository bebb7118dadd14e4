"""Placeholder: JSON batching is added by the batch work."""

from localgraph.errors import GraphError
from localgraph.routing import Router

router = Router()


@router.route("POST", "/$batch")
def run_batch(ctx, req, dispatch=None):
    raise GraphError(501, "NotImplemented", "batching is not implemented yet")
