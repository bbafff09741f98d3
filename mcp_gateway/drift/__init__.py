"""Drift: where an upstream API no longer matches its spec.

Sampled upstream responses are checked against the spec with openapi-core, off the hot path
(monitor.py samples and queues, check.py validates, describe.py says what is wrong without
quoting any response value); findings are kept in the store (store/drift.py) and reported by
`mcp-gateway apis drift NAME` and `GET /admin/apis/{name}/drift`.
"""
