from django.contrib.auth import views as auth_views
from django.urls import path

from webapp.core import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("settings/", views.settings_index, name="settings"),
    path("settings/users/", views.user_list, name="user_list"),
    path("settings/users/<int:user_id>/role", views.user_set_role, name="user_set_role"),
    path("settings/tokens/", views.token_list, name="token_list"),
    path("settings/tokens/<int:token_id>/revoke", views.token_revoke, name="token_revoke"),
    path("settings/audit/", views.audit_log, name="audit_log"),
]
