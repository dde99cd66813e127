from django.urls import path

from webapp.detection import anomaly_views, interference_views, views

urlpatterns = [
    path("interference/", interference_views.interference, name="interference"),
    path("interference/what-if/", interference_views.what_if_page, name="what_if"),
    path(
        "interference/nodes/<str:name>/",
        interference_views.interference_node,
        name="interference_node",
    ),
    path(
        "interference/instances/<str:name>/",
        interference_views.interference_instance,
        name="interference_instance",
    ),
    path("api/v1/interference/what-if", interference_views.what_if_api, name="what_if_api"),
    path("anomalies/", anomaly_views.anomaly_list, name="anomaly_list"),
    path("anomalies/<int:anomaly_id>/", anomaly_views.anomaly_detail, name="anomaly_detail"),
    path("anomalies/<int:anomaly_id>/label", anomaly_views.anomaly_label, name="anomaly_label"),
    path("models/", views.model_list, name="model_list"),
    path("models/anomaly/alarm-levels/", views.alarm_levels, name="alarm_levels"),
    path("models/<int:version_id>/", views.model_detail, name="model_detail"),
    path("models/train/<str:kind>", views.model_train, name="model_train"),
    path("models/<int:version_id>/promote", views.model_promote, name="model_promote"),
    path("models/rollback/<str:kind>", views.model_rollback, name="model_rollback"),
    path("api/models/<int:version_id>/progress", views.model_progress, name="model_progress"),
]
