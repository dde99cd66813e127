from django.apps import AppConfig


class DetectionConfig(AppConfig):
    name = "webapp.detection"
    label = "detection"
    verbose_name = "Detection (anomalies, interference, model versions)"
