from django.urls import path

from apps.tenancy.api import grant_views, namespace_views, views

app_name = "tenancy-api"

urlpatterns = [
    path("namespaces", namespace_views.NamespaceListView.as_view(), name="namespaces"),
    path("namespaces/<str:slug>", namespace_views.NamespaceDetailView.as_view(), name="namespace"),
    path("namespaces/<str:slug>/members", namespace_views.MemberListView.as_view(), name="members"),
    path("namespaces/<str:slug>/members/<str:username>", namespace_views.MemberDetailView.as_view(),
         name="member"),
    path("namespaces/<str:slug>/keys", views.KeyListView.as_view(), name="keys"),
    path("namespaces/<str:slug>/keys/<int:key_id>", views.KeyDetailView.as_view(), name="key"),
    path("namespaces/<str:slug>/keys/<int:key_id>/rotate", views.KeyRotateView.as_view(),
         name="key-rotate"),
    path("namespaces/<str:slug>/grants", grant_views.GrantListView.as_view(), name="grants"),
    path("namespaces/<str:slug>/grants/<int:grant_id>", grant_views.GrantDetailView.as_view(),
         name="grant"),
    path("sharing/accessible", grant_views.AccessibleView.as_view(), name="sharing-accessible"),
]
