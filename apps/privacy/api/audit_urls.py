from django.urls import path

from apps.privacy.api import audit_views as views

app_name = "audit-api"

urlpatterns = [
    path("audit", views.AuditListView.as_view(), name="audit"),
    path("audit/verify", views.AuditVerifyView.as_view(), name="audit-verify"),
]
