from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "webapp.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry"

    def ready(self):
        from django.db.backends.signals import connection_created

        from webapp.telemetry.store.sqlite import configure_sqlite_connection

        connection_created.connect(configure_sqlite_connection)
