"""The analyzer registry: one module per analyzer, listed here."""

from __future__ import annotations

import fnmatch
import importlib
from types import ModuleType

# Module names under forensics.analyzers; each defines NAME, VERSION, ACCEPTS,
# DESCRIPTION, LIMITS, PARAMETERS and analyze(path, params, ctx).
MODULES: list[str] = [
    "image_metadata",
    "image_thumbnail",
    "image_jpeg",
    "image_ela",
    "image_copymove",
    "image_ghost",
    "file_hashes",
    "file_type",
    "file_entropy",
    "file_structure",
    "file_archive",
    "audio_container",
    "audio_signal",
    "audio_enf",
    "audio_context",
    "audio_frames",
]


def _load() -> dict[str, ModuleType]:
    from django.conf import settings

    names = [f"{__name__}.{m}" for m in MODULES] + list(getattr(settings, "CUSTODY_EXTRA_ANALYZERS", []))
    registry = {}
    for dotted in names:
        module = importlib.import_module(dotted)
        if module.NAME in registry:
            raise RuntimeError(f"two analyzers are named {module.NAME}")
        if not isinstance(module.LIMITS, list):
            raise TypeError(f"{dotted}.LIMITS must be a list of paragraphs")
        registry[module.NAME] = module
    return registry


_registry: dict[str, ModuleType] | None = None


def registry() -> dict[str, ModuleType]:
    global _registry
    if _registry is None:
        _registry = _load()
    return _registry


def get(name: str) -> ModuleType | None:
    return registry().get(name)


def accepts(module: ModuleType, media_type: str) -> bool:
    return any(fnmatch.fnmatch(media_type, pattern) for pattern in module.ACCEPTS)
