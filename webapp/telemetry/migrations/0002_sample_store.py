"""Sample and rollup tables, owned by webapp.telemetry.store (partitioned on PostgreSQL)."""

from django.db import migrations


def install(apps, schema_editor):
    from webapp.telemetry.store import get_store

    get_store(schema_editor.connection.vendor).install(schema_editor)


def uninstall(apps, schema_editor):
    for table in ("telemetry_sample", "telemetry_sample_1m", "telemetry_sample_1h"):
        schema_editor.execute(f"DROP TABLE IF EXISTS {table}")


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
