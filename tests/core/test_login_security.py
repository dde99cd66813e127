"""Login lockouts, safe redirects after login and logout, and the audit rows they leave."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD
from webapp.core.models import AuditEvent

EVIL = "https://evil.example/"


@pytest.fixture
def tight(settings):
    settings.TELLTALE_LOGIN_MAX_FAILURES = 3
    settings.TELLTALE_LOGIN_MAX_FAILURES_PER_IP = 6
    settings.TELLTALE_LOGIN_WINDOW_SECONDS = 600
    settings.TELLTALE_LOGIN_LOCKOUT_SECONDS = 900
    return settings


def _login(client, username, password, ip="192.0.2.10", path=None, next=None, **meta):
    data = {"username": username, "password": password}
    if next is not None:
        data["next"] = next
    return client.post(path or reverse("login"), data, REMOTE_ADDR=ip, **meta)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_repeated_failures_lock_the_name_even_for_the_right_password(client, users, tight):
    for _ in range(3):
        response = _login(client, "viewer", "wrong")
        assert response.status_code == 200
    refused = _login(client, "viewer", PASSWORD)
    assert refused.status_code == 429
    assert 800 <= int(refused["Retry-After"]) <= 900
    assert "Too many failed logins" in refused.content.decode()
    assert not _logged_in(client)
    # The lock is on the name: from another address it is refused too…
    assert _login(Client(), "viewer", PASSWORD, ip="198.51.100.7").status_code == 429
    # …but other people can still log in.
    other = Client()
    assert _login(other, "operator", PASSWORD).status_code == 302 and _logged_in(other)


def test_lockout_ends_after_the_cool_down(client, users, tight, monkeypatch):
    import time

    for _ in range(3):
        _login(client, "viewer", "wrong")
    assert _login(client, "viewer", PASSWORD).status_code == 429
    later = time.time() + 901
    monkeypatch.setattr("webapp.core.throttle.time.time", lambda: later)
    assert _login(client, "viewer", PASSWORD).status_code == 302
    assert _logged_in(client)


def test_success_resets_the_count(client, users, tight):
    for _ in range(2):
        _login(client, "viewer", "wrong")
    assert _login(client, "viewer", PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        assert _login(client, "viewer", "wrong").status_code == 200
    # Without the reset this would be the fourth failure, past the limit of three.
    assert _login(client, "viewer", PASSWORD).status_code == 302


def test_one_address_guessing_many_names_is_locked(client, users, tight):
    for n in range(6):
        _login(client, f"nobody-{n}", "wrong", ip="203.0.113.5")
    assert _login(client, "operator", PASSWORD, ip="203.0.113.5").status_code == 429
    assert _login(Client(), "operator", PASSWORD, ip="203.0.113.6").status_code == 302


def test_forwarded_for_counts_only_behind_a_trusted_proxy(users, tight):
    # Without trusted hops X-Forwarded-For is ignored: a client cannot dodge the per-address
    # lock by inventing a new header each time.
    for n in range(6):
        _login(Client(), f"x{n}", "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert _login(Client(), "operator", PASSWORD).status_code == 429


def test_behind_a_trusted_proxy_the_address_it_appended_counts(users, tight):
    tight.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxy = "10.9.9.9"
    for n in range(6):
        # Whatever the client put first, the proxy appended the address it saw.
        _login(Client(), f"x{n}", "wrong", ip=proxy, HTTP_X_FORWARDED_FOR=f"1.1.1.{n}, 203.0.113.9")
    assert _login(Client(), "operator", PASSWORD, ip=proxy,
                  HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429  # fmt: skip
    # Other clients behind the same proxy are not locked out with it.
    other = _login(Client(), "operator", PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert other.status_code == 302
    event = AuditEvent.objects.get(action="login.locked")
    assert event.target == "203.0.113.9" and event.detail["scope"] == "ip"


def test_failures_lockouts_and_refusals_are_audited(client, users, tight):
    for _ in range(3):
        _login(client, "viewer", "wrong")
    for _ in range(4):
        _login(client, "viewer", PASSWORD)
    actions = list(AuditEvent.objects.filter(target="viewer").values_list("action", flat=True))
    assert actions.count("login.failed") == 3
    assert actions.count("login.locked") == 1
    # A flood of refused attempts writes one row per lock, not one per attempt.
    assert actions.count("login.throttled") == 1
    throttled = AuditEvent.objects.get(action="login.throttled")
    assert throttled.detail["ip"] == "192.0.2.10" and throttled.detail["scope"] == "user"
    assert "login.succeeded" not in actions


def test_successful_login_is_audited_with_the_address(client, users):
    _login(client, "viewer", PASSWORD, ip="192.0.2.44")
    event = AuditEvent.objects.get(action="login.succeeded")
    assert event.actor == users.viewer and event.detail == {"ip": "192.0.2.44"}


def test_admin_login_page_has_the_same_lockout(client, users, tight):
    users.admin.is_staff = True
    users.admin.save(update_fields=["is_staff"])
    admin_login = reverse("admin:login")
    for _ in range(3):
        _login(client, "admin", "wrong", path=admin_login)
    _login(client, "admin", PASSWORD, path=admin_login)
    assert not _logged_in(client)
    assert AuditEvent.objects.filter(action="login.throttled", target="admin").exists()
    assert _login(Client(), "admin", PASSWORD).status_code == 429


def test_login_ignores_a_next_on_another_site(client, users):
    page = client.get(reverse("login"), {"next": EVIL})
    assert page.status_code == 200 and "evil.example" not in page.content.decode()
    for next_url in (EVIL, "//evil.example/", "https:evil.example", "/\\evil.example"):
        response = _login(client, "viewer", PASSWORD, next=next_url)
        assert response.status_code == 302, next_url
        assert "evil.example" not in response["Location"], next_url
        assert response["Location"].startswith("/"), next_url
        client.logout()
    response = _login(client, "viewer", PASSWORD, next="/nodes/")
    assert response["Location"] == "/nodes/"


def test_logout_ignores_a_next_on_another_site(client, users):
    client.force_login(users.viewer)
    response = client.post(reverse("logout") + "?next=" + EVIL, {"next": EVIL})
    assert response.status_code == 302
    assert "evil.example" not in response["Location"]
    assert response["Location"] == reverse("login")
    assert not _logged_in(client)


def test_logout_needs_a_post(client, users):
    # A GET (an <img> on another site) must not log people out.
    client.force_login(users.viewer)
    assert client.get(reverse("logout")).status_code == 405
    assert _logged_in(client)
