"""The lifecycle's REST routes (docs/lifecycle.md)."""

from django.urls import path

from apps.lifecycle.api import views

app_name = "lifecycle-api"

urlpatterns = [
    path("namespaces/<str:slug>/end-of-day", views.EndOfDayView.as_view(), name="end-of-day"),
]
