"""Schemathesis hooks for scripts/contract.py (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis

# A tus PATCH body is raw bytes under tus's own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
