from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.memories.api import event_views, views

app_name = "memories-api"

router = SimpleRouter(trailing_slash=False)
router.register("memories", views.MemoryViewSet, basename="memory")
router.register("events", event_views.EventViewSet, basename="event")

urlpatterns = [
    path("recall", views.RecallView.as_view(), name="recall"),
    path("ingest_and_recall", views.IngestAndRecallView.as_view(), name="ingest-and-recall"),
    path("agents/<str:agent_id>/memories", views.AgentMemoriesView.as_view(), name="agent-memories"),
    *router.urls,
]
