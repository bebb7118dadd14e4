"""A local stand-in for Microsoft Graph v1.0 and the Microsoft identity platform.

It is a test bed, not part of the deployed app: the tests, the benchmark and the demo run the connector
against it. It serves a generated Entra ID tenant over HTTPS (certificate from a test CA), issues tokens
to the real azure-identity credentials, and reproduces the Graph behaviours documented in the README's
"Local Graph" section (paging, advanced queries, delta, $batch, throttling, error bodies).

Start it from Python with :class:`localgraph.server.LocalGraph` or from the shell with
``python -m localgraph``.
"""
