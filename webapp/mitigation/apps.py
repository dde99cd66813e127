from django.apps import AppConfig


class MitigationConfig(AppConfig):
    name = "webapp.mitigation"
    label = "mitigation"
    verbose_name = "Mitigation of unhealthy nodes"
