from django.urls import path

from apps.timeline.api import views

app_name = "timeline-api"

urlpatterns = [
    path("timeline", views.TimelineView.as_view(), name="timeline"),
    path("timeline/<str:node_id>", views.NodeView.as_view(), name="timeline-node"),
    path("grips/<str:grip_id>/expand", views.GripExpandView.as_view(), name="grip-expand"),
]
