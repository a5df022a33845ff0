from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from forensics import api as forensics_api
from forensics import views as forensics_views

from . import api, tus, views
from . import second_factor_views as second_factor

# A second factor changes only through custody.second_factor's services,
# which log it; django-otp's own admin pages would change devices (and show
# their keys) with no log entry.
for _model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)

# The audio player (wavesurfer.js, static/vendor/) writes one fixed
# stylesheet into a <style> element in its shadow root. The pages with a
# player allow that stylesheet by its hash, and no other inline style: a
# hash rather than a nonce, because tools that read shadow-root styles (axe,
# in tests/test_accessibility.py) copy it into the page without the nonce.
# The text depends on the vendored version and the waveform's height (96 px,
# static/custody/player.js); tests/test_player.py recomputes the hash from
# static/vendor/, so an update that changes it fails there with the new value.
WAVESURFER_STYLE_HASH = "'sha256-Y/8t1dAKa3ay+RZEiEFEDr8dFiQhpaFvYXXUfT3p6ZU='"
player_csp = csp_update({"style-src": [WAVESURFER_STYLE_HASH]})

urlpatterns = [
    # Web UI
    path("", views.case_list, name="case-list"),
    path("verify/", views.verify_page, name="verify"),
    path("search/", views.search, name="search"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", second_factor.account, name="account"),
    path("account/second-factor/", second_factor.verify, name="second-factor-verify"),
    path("account/second-factor/enrol/", second_factor.enrol, name="second-factor-enrol"),
    path(
        "account/second-factor/recovery-codes/",
        second_factor.recovery_codes,
        name="second-factor-recovery-codes",
    ),
    path("account/second-factor/remove/", second_factor.remove, name="second-factor-remove"),
    path("cases/new/", views.case_create, name="case-create"),
    path("cases/<uuid:case_id>/", views.case_detail, name="case-detail"),
    path("cases/<uuid:case_id>/members/", views.case_add_member, name="case-add-member"),
    path("evidence/<uuid:evidence_id>/", player_csp(views.evidence_detail), name="evidence-detail"),
    path("evidence/<uuid:evidence_id>/media/", views.evidence_media, name="evidence-media"),
    path("evidence/<uuid:evidence_id>/download/", views.evidence_download, name="evidence-download"),
    path("evidence/<uuid:evidence_id>/receipt/", views.evidence_receipt, name="evidence-receipt"),
    path("evidence/<uuid:evidence_id>/transfer/", views.evidence_transfer, name="evidence-transfer"),
    path("evidence/<uuid:evidence_id>/report/", views.evidence_report, name="evidence-report"),
    path("evidence/<uuid:evidence_id>/export/", views.evidence_export, name="evidence-export"),
    path(
        "evidence/<uuid:evidence_id>/examination/",
        forensics_views.examination_report,
        name="evidence-examination",
    ),
    path(
        "transfers/<uuid:transfer_id>/accept/",
        views.transfer_decide,
        {"accept": True},
        name="transfer-accept",
    ),
    path(
        "transfers/<uuid:transfer_id>/refuse/",
        views.transfer_decide,
        {"accept": False},
        name="transfer-refuse",
    ),
    path(
        "evidence/<uuid:evidence_id>/analyses/", forensics_views.request_for_evidence, name="evidence-analyse"
    ),
    path(
        "evidence/<uuid:evidence_id>/analyses/all/",
        forensics_views.request_all_for_evidence,
        name="evidence-analyse-all",
    ),
    path("evidence/<uuid:evidence_id>/status.json", forensics_views.evidence_status, name="evidence-status"),
    path("cases/<uuid:case_id>/analyses/", forensics_views.request_for_case, name="case-analyse"),
    path("cases/<uuid:case_id>/analyses/all/", forensics_views.request_all_for_case, name="case-analyse-all"),
    path("cases/<uuid:case_id>/status.json", forensics_views.case_status, name="case-status"),
    path("analyses/<uuid:analysis_id>/status.json", forensics_views.analysis_status, name="analysis-status"),
    path("status.json", forensics_views.home_status, name="home-status"),
    path("analyses/<uuid:analysis_id>/", forensics_views.analysis_detail, name="analysis-detail"),
    path("analyses/<uuid:analysis_id>/listen/", player_csp(views.analysis_compare), name="analysis-compare"),
    path(
        "analyses/<uuid:analysis_id>/envelope/", forensics_views.analysis_envelope, name="analysis-envelope"
    ),
    path("analyses/<uuid:analysis_id>/publish/", forensics_views.publish, name="analysis-publish"),
    path(
        "analyses/<uuid:analysis_id>/artifacts/<str:sha256>/",
        forensics_views.analysis_artifact,
        name="analysis-artifact",
    ),
    path("admin/", admin.site.urls),
    # REST API (contract in DESIGN.md: extend, don't rename)
    path("api/v1/auth/token/", api.TokenView.as_view(), name="api-token"),
    path("api/v1/cases/", api.CaseListView.as_view(), name="api-cases"),
    path("api/v1/cases/<str:case_id>/", api.CaseDetailView.as_view(), name="api-case"),
    path("api/v1/evidence/", api.EvidenceListView.as_view(), name="api-evidence-list"),
    path("api/v1/uploads/", tus.UploadCreateView.as_view(), name="api-upload-create"),
    path("api/v1/uploads/<str:upload_id>/", tus.UploadView.as_view(), name="api-upload"),
    path("api/v1/evidence/<str:evidence_id>/", api.EvidenceDetailView.as_view(), name="api-evidence"),
    path(
        "api/v1/evidence/<str:evidence_id>/content/",
        api.EvidenceContentView.as_view(),
        name="api-evidence-content",
    ),
    path(
        "api/v1/evidence/<str:evidence_id>/receipt/",
        api.EvidenceReceiptView.as_view(),
        name="api-evidence-receipt",
    ),
    path(
        "api/v1/evidence/<str:evidence_id>/transfers/",
        api.EvidenceTransfersView.as_view(),
        name="api-evidence-transfers",
    ),
    path("api/v1/transfers/", api.TransferListView.as_view(), name="api-transfers"),
    path(
        "api/v1/transfers/<str:transfer_id>/accept/",
        api.TransferDecisionView.as_view(accept=True),
        name="api-transfer-accept",
    ),
    path(
        "api/v1/transfers/<str:transfer_id>/refuse/",
        api.TransferDecisionView.as_view(accept=False),
        name="api-transfer-refuse",
    ),
    path(
        "api/v1/evidence/<str:evidence_id>/export/",
        api.EvidenceExportView.as_view(),
        name="api-evidence-export",
    ),
    path("api/v1/keys/", api.KeysView.as_view(), name="api-keys"),
    path("api/v1/trust-root/", api.TrustRootView.as_view(), name="api-trust-root"),
    path("api/v1/trust-root/chain/", api.TrustRootChainView.as_view(), name="api-trust-root-chain"),
    path("api/v1/analyzers/", forensics_api.AnalyzerListView.as_view(), name="api-analyzers"),
    path(
        "api/v1/evidence/<str:evidence_id>/analyses/",
        forensics_api.EvidenceAnalysesView.as_view(),
        name="api-evidence-analyses",
    ),
    path(
        "api/v1/cases/<str:case_id>/analyses/",
        forensics_api.CaseAnalysesView.as_view(),
        name="api-case-analyses",
    ),
    path(
        "api/v1/evidence/<str:evidence_id>/analyses/all/",
        forensics_api.EvidenceAllAnalysesView.as_view(),
        name="api-evidence-analyses-all",
    ),
    path(
        "api/v1/cases/<str:case_id>/analyses/all/",
        forensics_api.CaseAllAnalysesView.as_view(),
        name="api-case-analyses-all",
    ),
    path(
        "api/v1/analyses/<str:analysis_id>/", forensics_api.AnalysisDetailView.as_view(), name="api-analysis"
    ),
    path(
        "api/v1/analyses/<str:analysis_id>/publish/",
        forensics_api.AnalysisPublishView.as_view(),
        name="api-analysis-publish",
    ),
    path(
        "api/v1/analyses/<str:analysis_id>/artifacts/<str:sha256>/",
        forensics_api.AnalysisArtifactView.as_view(),
        name="api-analysis-artifact",
    ),
    path("api/v1/public/results/", forensics_api.PublicResultsView.as_view(), name="api-public-results"),
    path(
        "api/v1/public/artifacts/<str:sha256>/",
        forensics_api.PublicArtifactView.as_view(),
        name="api-public-artifact",
    ),
    path("api/v1/log/checkpoint", api.CheckpointView.as_view(), name="api-log-checkpoint"),
    path("api/v1/log/witnesses/", api.WitnessesView.as_view(), name="api-log-witnesses"),
    path("api/v1/log/entries/", api.LogEntriesView.as_view(), name="api-log-entries"),
    path("api/v1/log/proof/inclusion/", api.InclusionProofView.as_view(), name="api-log-inclusion"),
    path("api/v1/log/proof/consistency/", api.ConsistencyProofView.as_view(), name="api-log-consistency"),
    path("api/v1/log/timestamps/", api.TimestampsView.as_view(), name="api-log-timestamps"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's setup script from its own URL (?script=), not inline.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Redoc writes its styles into <style> elements (styled-components), runs
    # its search in a Worker made from a blob: URL and always shows Redocly's
    # logo from their CDN (no option turns it off; with no network it is just
    # not shown, and the referrer policy sends no URL with it). The CSP allows
    # these three on this page only, which shows the public schema and takes
    # no input; Swagger UI (/api/docs/) needs none of them.
    path(
        "api/redoc/",
        csp_update(
            {"style-src": [UNSAFE_INLINE], "worker-src": ["blob:"], "img-src": ["https://cdn.redoc.ly"]}
        )(SpectacularRedocView.as_view(url_name="api-schema")),
        name="api-redoc",
    ),
]

handler500 = "custody.views.server_error"
