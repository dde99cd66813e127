from django.urls import path

from webapp.telemetry import api, promapi, views

urlpatterns = [
    # Prometheus-compatible read API (Grafana data source)
    path("api/v1/query_range", promapi.query_range, name="prom_query_range"),
    path("api/v1/query", promapi.instant_query, name="prom_query"),
    path("api/v1/series", promapi.series, name="prom_series"),
    path("api/v1/labels", promapi.labels, name="prom_labels"),
    path("api/v1/label/<str:name>/values", promapi.label_values, name="prom_label_values"),
    path("api/v1/status/buildinfo", promapi.buildinfo, name="prom_buildinfo"),
    path("api/v1/metadata", promapi.metadata, name="prom_metadata"),
    # Telltale's own API
    path("api/telemetry/series", api.series_list, name="api_series"),
    path("api/telemetry/range", api.range_data, name="api_range"),
    path("api/telemetry/logs", api.log_search, name="api_logs"),
    # admin pages
    path("settings/scrape-targets/", views.scrape_target_list, name="scrape_target_list"),
    path(
        "settings/scrape-targets/<int:target_id>/",
        views.scrape_target_edit,
        name="scrape_target_edit",
    ),
    path(
        "settings/scrape-targets/<int:target_id>/delete",
        views.scrape_target_delete,
        name="scrape_target_delete",
    ),
]
