from django.urls import path

from apps.tenancy.api import grant_views, invitation_views, namespace_views, views

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
    path("namespaces/<str:slug>/invitations", invitation_views.NamespaceInvitationListView.as_view(),
         name="invitations"),
    path("namespaces/<str:slug>/invitations/<int:invitation_id>",
         invitation_views.NamespaceInvitationDetailView.as_view(), name="invitation"),
    path("invitations", invitation_views.MyInvitationListView.as_view(), name="my-invitations"),
    path("invitations/<int:invitation_id>/accept", invitation_views.InvitationAcceptView.as_view(),
         name="invitation-accept"),
    path("invitations/<int:invitation_id>/decline",
         invitation_views.InvitationDeclineView.as_view(), name="invitation-decline"),
]
