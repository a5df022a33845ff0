"""``{% media_for evidence as m %}``: what the evidence page's player or image viewer needs.

Called while rendering a page whose view has just logged ``evidence.viewed``
for this user and item (the evidence page, the side-by-side page): the media
URL it returns carries the token that covers the player's range requests
(custody/media.py).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.urls import reverse

from custody import media

from .. import markers

register = template.Library()

# Above this the browser is not asked to fetch and decode the whole file to
# draw a waveform and spectrogram: the plain player still plays and seeks.
WAVEFORM_MAX_BYTES = 64 * 1024 * 1024


def media_url(user, evidence) -> str:
    query = urlencode({"t": media.make_token(user.pk, evidence.pk)})
    return f"{reverse('evidence-media', args=[evidence.pk])}?{query}"


def audio_context(user, evidence, results=None) -> dict:
    results = markers.completed_results(evidence) if results is None else results
    playable = media.is_playable(evidence.media_type)
    return {
        "kind": "audio",
        "playable": playable,
        "url": media_url(user, evidence) if playable else "",
        "waveform": evidence.blob.size <= WAVEFORM_MAX_BYTES,
        "markers": markers.audio_markers(results),
    }


@register.simple_tag(takes_context=True)
def media_for(context, evidence) -> dict:
    user = context["request"].user
    if media.is_audio(evidence.media_type):
        results = markers.completed_results(evidence)
        out = audio_context(user, evidence, results)
        out["comparisons"] = [
            {"analysis": r.analysis, "url": reverse("analysis-compare", args=[r.analysis])}
            for r in results
            if r.analyzer == markers.CONTEXT_ANALYZER and markers.alignment(r.predicate)
        ]
        return out
    if media.is_viewable(evidence.media_type):
        layers = markers.image_layers_for(evidence)
        for overlay in layers["overlays"]:
            overlay["url"] = reverse("analysis-artifact", args=[overlay["analysis"], overlay["sha256"]])
        return {"kind": "image", "url": media_url(user, evidence), "layers": layers}
    return {"kind": None}
