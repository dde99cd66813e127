from django.urls import path

from webapp.incidents import api, views

urlpatterns = [
    path("incidents/", views.incident_list, name="incident_list"),
    path("incidents/<int:incident_id>/", views.incident_detail, name="incident_detail"),
    path("incidents/<int:incident_id>/act", views.incident_act, name="incident_act"),
    path(
        "incidents/<int:incident_id>/postmortem.<str:fmt>",
        views.incident_export,
        name="incident_export",
    ),
    path("incidents/rules/", views.rule_list, name="correlation_rules"),
    path("incidents/rules/<int:rule_id>/", views.rule_edit, name="correlation_rule_edit"),
    path("api/annotations", api.collection, name="annotations"),
    path("api/annotations/<int:annotation_id>", api.item, name="annotation"),
]
