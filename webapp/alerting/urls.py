from django.urls import path

from webapp.alerting import api, views, views_config

urlpatterns = [
    path("alerts/", views.alert_list, name="alert_list"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="alert_detail"),
    path("alerts/<int:alert_id>/ack", views.alert_ack, name="alert_ack"),
    path("alerts/<int:alert_id>/unack", views.alert_unack, name="alert_unack"),
    path("alerts/history/", views.alert_history, name="alert_history"),
    path("alerts/notifications/", views.notification_list, name="notification_list"),
    path("alerts/silences/", views.silence_list, name="silence_list"),
    path("alerts/silences/new", views.silence_create, name="silence_create"),
    path("alerts/silences/<int:silence_id>/", views.silence_edit, name="silence_edit"),
    path("alerts/silences/<int:silence_id>/expire", views.silence_expire, name="silence_expire"),
    path("alerts/rules/", views_config.rule_list, name="rule_list"),
    path("alerts/rules/new", views_config.rule_create, name="rule_create"),
    path("alerts/rules/<int:rule_id>/", views_config.rule_detail, name="rule_detail"),
    path("alerts/rules/<int:rule_id>/edit", views_config.rule_edit, name="rule_edit"),
    path("alerts/rules/<int:rule_id>/delete", views_config.rule_delete, name="rule_delete"),
    path("alerts/rules/<int:rule_id>/evaluate", views_config.rule_evaluate, name="rule_evaluate"),
    path("alerts/receivers/", views_config.receiver_list, name="receiver_list"),
    path("alerts/receivers/new", views_config.receiver_create, name="receiver_create"),
    path("alerts/receivers/<int:receiver_id>/", views_config.receiver_edit, name="receiver_edit"),
    path(
        "alerts/receivers/<int:receiver_id>/delete",
        views_config.receiver_delete,
        name="receiver_delete",
    ),
    path(
        "alerts/receivers/<int:receiver_id>/test", views_config.receiver_test, name="receiver_test"
    ),
    path("alerts/routes/", views_config.route_list, name="route_list"),
    path("alerts/routes/new", views_config.route_create, name="route_create"),
    path("alerts/routes/<int:route_id>/", views_config.route_edit, name="route_edit"),
    path("alerts/routes/<int:route_id>/delete", views_config.route_delete, name="route_delete"),
    path("alerts/inhibitions/new", views_config.inhibition_create, name="inhibition_create"),
    path(
        "alerts/inhibitions/<int:inhibition_id>/",
        views_config.inhibition_edit,
        name="inhibition_edit",
    ),
    path(
        "alerts/inhibitions/<int:inhibition_id>/delete",
        views_config.inhibition_delete,
        name="inhibition_delete",
    ),
    path("alerts/maintenance/new", views_config.window_create, name="window_create"),
    path("alerts/maintenance/<int:window_id>/", views_config.window_edit, name="window_edit"),
    path(
        "alerts/maintenance/<int:window_id>/delete",
        views_config.window_delete,
        name="window_delete",
    ),
    # JSON API
    path("api/alerting/alerts", api.alerts, name="api_alerts"),
    path("api/alerting/alerts/<int:alert_id>/ack", api.alert_ack, name="api_alert_ack"),
    path("api/alerting/silences", api.silences, name="api_silences"),
    path("api/alerting/rules", api.rules, name="api_rules"),
    path("api/alerting/rules/backtest", api.rule_backtest, name="api_rule_backtest"),
]
