from django.urls import path

from ingest import receivers

urlpatterns = [
    path("api/v1/write", receivers.remote_write, name="remote_write"),
    path("v1/metrics", receivers.otlp_metrics, name="otlp_metrics"),
    path("v1/logs", receivers.otlp_logs, name="otlp_logs"),
    path("api/v1/logs/jsonl", receivers.jsonl_logs, name="jsonl_logs"),
    path("api/v1/simulator/truth", receivers.simulator_truth, name="simulator_truth"),
]
