from django.urls import path

from apps.lifecycle.api import forgetting_views
from apps.lifecycle.api import merge_views as views

app_name = "lifecycle-merge"

urlpatterns = [
    path("namespaces/<str:slug>/merge-into", views.MergeIntoView.as_view(), name="merge-into"),
    path("namespace-merges/<str:pk>", views.MergeDetailView.as_view(), name="merge"),
    path("namespace-merges/<str:pk>/revert", views.MergeRevertView.as_view(), name="revert"),
    path("namespaces/<str:slug>/forgetting", forgetting_views.ForgettingView.as_view(),
         name="forgetting"),
    path("namespaces/<str:slug>/forgetting/dismiss", forgetting_views.DismissView.as_view(),
         name="forgetting-dismiss"),
]
