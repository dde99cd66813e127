from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "webapp.core"
    label = "core"
    verbose_name = "Telltale core"

    def ready(self):
        from django.contrib import admin

        from webapp.core.forms import ThrottledAdminAuthenticationForm

        # /admin/login/ checks passwords too: the same lockouts apply there.
        admin.site.login_form = ThrottledAdminAuthenticationForm
