"""Schemathesis hooks for .ci/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

They drop, before sending, the few generated requests that the document
calls valid but that the server reads differently, for reasons JSON Schema
cannot state (docs/openapi.yaml says them in words):

- a tenant is at most 1024 *bytes* of UTF-8, while maxLength counts
  characters: a tenant of at most 1024 characters but more than 1024 bytes;
- item keys are matched case-insensitively, the last duplicate winning: an
  extra key such as "id" or "TENANT" next to "ID" and "tenant" replaces them.

Every other request, non-ASCII tenants and extra keys included, is sent.
"""

from urllib.parse import unquote

import schemathesis

MAX_TENANT_BYTES = 1024
ITEM_KEYS = {"id": "ID", "tenant": "tenant"}


def tenant_too_long_in_bytes(tenant):
    if not isinstance(tenant, str) or len(tenant) > MAX_TENANT_BYTES:
        return False
    return len(tenant.encode("utf-8", "surrogatepass")) > MAX_TENANT_BYTES


def read_differently(item):
    if not isinstance(item, dict):
        return False
    if tenant_too_long_in_bytes(item.get("tenant")):
        return True
    return any(
        isinstance(key, str) and ITEM_KEYS.get(key.lower(), key) != key for key in item
    )


@schemathesis.hook
def filter_path_parameters(context, path_parameters):
    # Path parameters arrive here percent-encoded already.
    tenant = (path_parameters or {}).get("tenant")
    return not (isinstance(tenant, str) and tenant_too_long_in_bytes(unquote(tenant)))


@schemathesis.hook
def filter_body(context, body):
    return not (isinstance(body, list) and any(read_differently(item) for item in body))
