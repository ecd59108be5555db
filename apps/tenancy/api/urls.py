from django.urls import path

from apps.tenancy.api import views

app_name = "tenancy-api"

urlpatterns = [
    path("namespaces/<str:slug>/keys", views.KeyListView.as_view(), name="keys"),
    path("namespaces/<str:slug>/keys/<int:key_id>", views.KeyDetailView.as_view(), name="key"),
    path("namespaces/<str:slug>/keys/<int:key_id>/rotate", views.KeyRotateView.as_view(),
         name="key-rotate"),
]
