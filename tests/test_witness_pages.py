"""Witness finality on the pages: the custody report (web and bundle) and the public verification page.

For the checkpoint a page shows: how many witnesses cosigned it, which, and
whether that makes it final (quorum reached); with no witnesses configured,
that the checkpoint rests on the server's log key alone. Two real witness
processes (tests/test_witness.py) cosign; the rendered HTML is checked.
"""

from __future__ import annotations

import io
import re
import zipfile

from custody import log, witnessing

from .test_analyses import request
from .test_witness import log_vkey, witnesses  # noqa: F401 - fixtures

NO_WITNESSES = "no witnesses configured: the checkpoint rests on the server's log key alone"


def panel(html: str, size: int) -> str:
    """The witness paragraph a page renders for the checkpoint of ``size``, as plain text."""
    match = re.search(rf'<div class="witnesses" id="witnesses-{size}">(.*?)</div>', html, re.S)
    assert match, f"no witness panel for checkpoint {size}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def report(client, evidence) -> str:
    response = client.get(f"/evidence/{evidence.pk}/report/")
    assert response.status_code == 200
    return response.content.decode()


def published(as_alice, evidence) -> None:
    from forensics import services

    analysis_id = request(as_alice, evidence.pk).json()["id"]
    services.run_analysis(analysis_id, worker="inline")
    assert as_alice.post(f"/api/v1/analyses/{analysis_id}/publish/").status_code == 200


def bundle_report(as_alice, evidence) -> str:
    response = as_alice.get(f"/api/v1/evidence/{evidence.pk}/export/")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as z:
        name = next(n for n in z.namelist() if n.endswith("data/report.html"))
        return z.read(name).decode()


# --- no witnesses -------------------------------------------------------------


def test_report_says_the_checkpoint_rests_on_the_log_key_alone(client, alice, evidence_a):
    client.force_login(alice)
    html = report(client, evidence_a)
    sizes = [int(s) for s in re.findall(r'id="witnesses-(\d+)"', html)]
    assert sizes, "the report shows no witness panel"
    for size in sizes:
        assert NO_WITNESSES in panel(html, size)
    assert "final (quorum reached)" not in html


def test_public_page_says_the_checkpoint_rests_on_the_log_key_alone(as_alice, evidence_a, client):
    published(as_alice, evidence_a)
    body = client.get("/api/v1/public/results/", {"sha256": evidence_a.sha256}).json()
    assert body["witnesses"]["configured"] == 0 and body["witnesses"]["final"] is False
    html = client.get("/verify/", {"sha256": evidence_a.sha256}).content.decode()
    assert NO_WITNESSES in panel(html, body["witnesses"]["size"])


def test_bundle_report_says_the_checkpoint_rests_on_the_log_key_alone(as_alice, evidence_a):
    html = bundle_report(as_alice, evidence_a)
    assert NO_WITNESSES in html


# --- with witnesses --------------------------------------------------------------


def test_report_names_the_cosigners_and_says_final_only_at_quorum(
    witnesses,  # noqa: F811
    client,
    alice,
    evidence_a,
):
    client.force_login(alice)
    checkpoint = log.latest_checkpoint()
    witnesses[1].stop()  # one of two down: cosigned by w1 only
    witnessing.witness_checkpoints()
    text = panel(report(client, evidence_a), checkpoint.size)
    assert "cosigned by 1 of 2 configured witnesses (quorum 2)" in text
    assert "not final (quorum not reached)" in text
    assert "cosigned by w1.witness.test at" in text and "not (yet) cosigned by w2.witness.test" in text

    witnesses[1].start()  # back, with its state: both cosign the same checkpoint
    witnessing.witness_checkpoints()
    assert log.latest_checkpoint().size == checkpoint.size  # the report itself logs nothing
    text = panel(report(client, evidence_a), checkpoint.size)
    assert "cosigned by 2 of 2 configured witnesses (quorum 2)" in text and "final (quorum reached)" in text
    assert "cosigned by w1.witness.test at" in text and "cosigned by w2.witness.test at" in text
    assert "not final" not in text and NO_WITNESSES not in text


def test_report_says_a_later_final_checkpoint_extends_one_that_is_not(
    witnesses,  # noqa: F811
    client,
    alice,
    as_alice,
    case_a,
    evidence_a,
):
    from .conftest import upload

    client.force_login(alice)
    checkpoint = log.latest_checkpoint()
    witnesses[1].stop()
    witnessing.witness_checkpoints()  # the item's checkpoint: w1 only
    witnesses[1].start()
    upload(as_alice, case_a, b"another item")
    witnessing.witness_checkpoints()  # a larger one: both
    later = log.latest_checkpoint()
    assert later.size > checkpoint.size and witnessing.is_final(later)
    text = panel(report(client, evidence_a), checkpoint.size)
    assert "cosigned by 1 of 2" in text and "not final" in text
    assert f"the final checkpoint of size {later.size} extends it" in text
    assert f"first={checkpoint.size}&amp;second={later.size}" in report(client, evidence_a)


def test_report_final_with_a_smaller_quorum(witnesses, client, alice, evidence_a, settings):  # noqa: F811
    settings.CUSTODY_WITNESS_QUORUM = 1
    client.force_login(alice)
    checkpoint = log.latest_checkpoint()
    witnesses[1].stop()
    witnessing.witness_checkpoints()
    text = panel(report(client, evidence_a), checkpoint.size)
    assert "cosigned by 1 of 2 configured witnesses (quorum 1)" in text and "final (quorum reached)" in text
    assert NO_WITNESSES not in text


def test_public_page_and_api_name_the_cosigners(witnesses, as_alice, evidence_a, client):  # noqa: F811
    published(as_alice, evidence_a)
    checkpoint = log.latest_checkpoint()
    witnessing.witness_checkpoints()
    body = client.get("/api/v1/public/results/", {"sha256": evidence_a.sha256}).json()
    w = body["witnesses"]
    assert w["size"] == checkpoint.size and w["final"] is True and w["cosigned"] == 2
    assert [c["name"] for c in w["cosigned_by"]] == ["w1.witness.test", "w2.witness.test"]
    # The checkpoint served carries the cosignature lines themselves.
    assert "\u2014 w1.witness.test " in body["checkpoint"] and "\u2014 w2.witness.test " in body["checkpoint"]
    html = client.get("/verify/", {"sha256": evidence_a.sha256}).content.decode()
    text = panel(html, checkpoint.size)
    assert "cosigned by 2 of 2 configured witnesses (quorum 2)" in text and "final (quorum reached)" in text
    assert "w1.witness.test" in text and "w2.witness.test" in text


def test_bundle_report_says_final_or_not(witnesses, as_alice, evidence_a):  # noqa: F811
    html = bundle_report(as_alice, evidence_a)  # the export asks the witnesses itself
    sizes = [int(s) for s in re.findall(r'id="witnesses-(\d+)"', html)]
    assert "cosigned by 2 of 2 configured witnesses" in panel(html, sizes[-1])
    assert "final (quorum reached)" in panel(html, sizes[-1])

    witnesses[1].stop()
    html = bundle_report(as_alice, evidence_a)
    sizes = [int(s) for s in re.findall(r'id="witnesses-(\d+)"', html)]
    text = panel(html, sizes[0])
    assert "cosigned by 1 of 2 configured witnesses" in text and "not final" in text
    assert "not (yet) cosigned by w2.witness.test" in text
