from django.urls import path

from webapp.dashboards import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("nodes/", views.node_list, name="node_list"),
    path("nodes/<str:name>/", views.node_detail, name="node_detail"),
    path("instances/<str:name>/", views.instance_detail, name="instance_detail"),
    path("explore/", views.explore, name="explore"),
]
