"""Placeholder: routes are added by the delta work."""

from localgraph.routing import Router

router = Router()
