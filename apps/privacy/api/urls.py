from django.urls import path

from apps.privacy.api import encryption_views, views

app_name = "privacy-api"

urlpatterns = [
    path("export", views.ExportView.as_view(), name="export"),
    path("erasure-requests", views.ErasureListView.as_view(), name="erasure-requests"),
    path("erasure-requests/<str:request_id>", views.ErasureDetailView.as_view(),
         name="erasure-request"),
    path("erasure-requests/<str:request_id>/approve", views.ErasureApproveView.as_view(),
         name="erasure-approve"),
    path("erasure-requests/<str:request_id>/reject", views.ErasureRejectView.as_view(),
         name="erasure-reject"),
    path("erasure-requests/<str:request_id>/execute", views.ErasureExecuteView.as_view(),
         name="erasure-execute"),
    path("erasure-requests/<str:request_id>/certificate", views.CertificateView.as_view(),
         name="erasure-certificate"),
    path("forget/certified", views.ForgetCertifiedView.as_view(), name="forget-certified"),
    path("encryption", encryption_views.EncryptionStatusView.as_view(), name="encryption"),
    path("erasure-ledger", encryption_views.ErasureLedgerView.as_view(), name="erasure-ledger"),
]
