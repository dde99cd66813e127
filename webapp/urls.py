from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Telltale data admin"
admin.site.site_title = "Telltale admin"

urlpatterns = [
    path("", include("webapp.core.urls")),
    path("", include("ingest.urls")),
    path("", include("webapp.telemetry.urls")),
    path("", include("webapp.detection.urls")),
    path("", include("webapp.incidents.urls")),
    path("", include("webapp.mitigation.urls")),
    path("", include("webapp.alerting.urls")),
    path("", include("webapp.dashboards.urls")),
    path("admin/", admin.site.urls),
]
