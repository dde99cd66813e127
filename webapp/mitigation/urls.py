from django.urls import path

from webapp.mitigation import views

urlpatterns = [
    path("mitigation/", views.mitigation, name="mitigation"),
    path("mitigation/events/new/", views.event_create, name="mitigation_event_new"),
    path("mitigation/events/<int:event_id>/", views.event_detail, name="mitigation_event"),
    path("mitigation/events/<int:event_id>/apply", views.event_apply, name="mitigation_apply"),
    path(
        "mitigation/events/<int:event_id>/outcome", views.event_outcome, name="mitigation_outcome"
    ),
    path("mitigation/import/", views.history_import, name="mitigation_import"),
    path("api/v1/mitigation/events", views.events_api, name="mitigation_events_api"),
]
