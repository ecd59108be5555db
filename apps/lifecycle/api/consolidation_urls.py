from django.urls import path

from apps.lifecycle.api import consolidation_views as views

app_name = "lifecycle-consolidation"

urlpatterns = [
    path("namespaces/<str:slug>/consolidate", views.ConsolidateView.as_view(), name="consolidate"),
    path("memories/<str:pk>/unmerge", views.UnmergeView.as_view(), name="unmerge"),
    path("consolidations/<str:pk>", views.ConsolidationRunView.as_view(), name="run"),
    path("namespaces/<str:slug>/keep-apart", views.KeepApartView.as_view(), name="keep-apart"),
    path("namespaces/<str:slug>/allow-together", views.AllowTogetherView.as_view(),
         name="allow-together"),
]
