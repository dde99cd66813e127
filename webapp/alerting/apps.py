from django.apps import AppConfig


class AlertingConfig(AppConfig):
    name = "webapp.alerting"
    label = "alerting"
    verbose_name = "Alerting (rules, alerts, silences, routes, receivers)"
