from django.urls import path

from webapp.dashboards import dashboard_views, views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("nodes/", views.node_list, name="node_list"),
    path("nodes/<str:name>/", views.node_detail, name="node_detail"),
    path("nodes/<str:name>/capacity", views.node_capacity, name="node_capacity"),
    path("instances/<str:name>/", views.instance_detail, name="instance_detail"),
    path("explore/", views.explore, name="explore"),
    path("dashboards/", dashboard_views.dashboard_list, name="dashboard_list"),
    path("dashboards/new/", dashboard_views.dashboard_create, name="dashboard_create"),
    path("dashboards/<slug:slug>/", dashboard_views.dashboard_view, name="dashboard_view"),
    path("dashboards/<slug:slug>/edit/", dashboard_views.dashboard_edit, name="dashboard_edit"),
    path(
        "dashboards/<slug:slug>/delete", dashboard_views.dashboard_delete, name="dashboard_delete"
    ),
]
