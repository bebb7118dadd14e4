"""Placeholder: routes are added by the writes work."""

from localgraph.routing import Router

router = Router()
