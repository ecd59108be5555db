"""The drop-in routes, mounted by memoryweb/urls.py under the configured prefixes."""

from django.urls import path

from apps.compat import cmm, memoryoss

cmm_patterns = [
    path("ingest", cmm.IngestView.as_view(), name="ingest"),
    path("recall", cmm.RecallView.as_view(), name="recall"),
    path("ingest_and_recall", cmm.IngestAndRecallView.as_view(), name="ingest-and-recall"),
    path("memory/<str:memory_id>", cmm.MemoryView.as_view(), name="memory"),
    path("memories", cmm.MemoriesView.as_view(), name="memories"),
    path("memories/agent/<str:agent_id>", cmm.AgentMemoriesView.as_view(), name="agent-memories"),
    path("consolidate", cmm.ConsolidateView.as_view(), name="consolidate"),
    path("end_of_day", cmm.EndOfDayView.as_view(), name="end-of-day"),
    path("merge", cmm.MergeView.as_view(), name="merge"),
    path("save", cmm.SaveView.as_view(), name="save"),
    path("health", cmm.HealthView.as_view(), name="health"),
]

memoryoss_patterns = [
    path("auth/token", memoryoss.AuthTokenView.as_view(), name="auth-token"),
    path("store", memoryoss.StoreView.as_view(), name="store"),
    path("store/batch", memoryoss.StoreBatchView.as_view(), name="store-batch"),
    path("recall", memoryoss.RecallView.as_view(), name="recall"),
    path("recall/batch", memoryoss.RecallBatchView.as_view(), name="recall-batch"),
    path("update", memoryoss.UpdateView.as_view(), name="update"),
    path("forget", memoryoss.ForgetView.as_view(), name="forget"),
    path("forget/certified", memoryoss.ForgetCertifiedView.as_view(), name="forget-certified"),
    path("export", memoryoss.ExportView.as_view(), name="export"),
    path("memories", memoryoss.MemoriesView.as_view(), name="memories"),
    path("consolidate", memoryoss.ConsolidateView.as_view(), name="consolidate"),
]
