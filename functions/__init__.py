"""Trigger adapters: the only package that imports ``azure.functions``. Each handler parses its trigger,
calls one function in ``shared/``, and maps the result back."""
