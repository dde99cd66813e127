"""State changes of users, roles and tokens. Views and commands call these, nothing else."""

from __future__ import annotations

import base64
import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from webapp.core import roles, throttle
from webapp.core.models import AuditEvent, IngestToken

TOKEN_PREFIX = "tt_"  # noqa: S105 - marks Telltale tokens, not a secret


def hash_token(raw: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


def audit(actor, action: str, target: str = "", **detail) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        target=target[:200],
        detail=detail,
    )


@transaction.atomic
def create_ingest_token(name: str, scopes: list[str], actor=None) -> tuple[IngestToken, str]:
    """Return the token row and the raw token, which is shown once and never stored."""
    unknown = sorted(set(scopes) - set(IngestToken.SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(IngestToken.SCOPES)}")
    if IngestToken.objects.filter(name=name).exists():
        raise ValueError(f"a token named {name!r} already exists")
    raw = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    token = IngestToken.objects.create(
        name=name,
        prefix=raw[:10],
        token_hash=hash_token(raw),
        scopes=sorted(set(scopes)),
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    audit(actor, "token.created", name, scopes=token.scopes)
    return token, raw


@transaction.atomic
def revoke_ingest_token(token: IngestToken, actor=None) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit(actor, "token.revoked", token.name)
    from webapp.core.tokens import forget_cached_tokens

    forget_cached_tokens()


@transaction.atomic
def set_ingest_token_quotas(
    token: IngestToken, *, rate_limit: int | None, max_new_series: int | None, actor=None
) -> None:
    """Per-token overrides of the ingest quotas: None follows the TELLTALE_INGEST_* default,
    0 means unlimited. Other processes see the change within the token cache's lifetime."""
    for field, value in (("rate_limit", rate_limit), ("max_new_series", max_new_series)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{field} must be a whole number or None")
        if value is not None and value < 0:
            raise ValueError(f"{field} must not be negative")
    before = {"rate_limit": token.rate_limit, "max_new_series": token.max_new_series}
    token.rate_limit, token.max_new_series = rate_limit, max_new_series
    token.save(update_fields=["rate_limit", "max_new_series"])
    after = {"rate_limit": rate_limit, "max_new_series": max_new_series}
    if before != after:
        audit(actor, "token.quotas_changed", token.name, before=before, after=after)
    from webapp.core.tokens import forget_cached_tokens

    forget_cached_tokens()


def ensure_role_groups() -> None:
    for name in roles.ROLES:
        Group.objects.get_or_create(name=name)


@transaction.atomic
def set_user_role(user, role: str | None, actor=None) -> None:
    if role is not None and role not in roles.ROLES:
        raise ValueError(f"unknown role {role!r}")
    ensure_role_groups()
    previous = roles.role_of(user)
    user.groups.remove(*Group.objects.filter(name__in=roles.ROLES))
    if role:
        user.groups.add(Group.objects.get(name=role))
    user.__dict__.pop("_telltale_role", None)
    if previous != role:
        audit(actor, "user.role_changed", user.get_username(), before=previous, after=role)


@transaction.atomic
def create_user(username: str, password: str, role: str, email: str = "", actor=None):
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise ValueError(f"user {username!r} already exists")
    user = User.objects.create_user(username=username, password=password, email=email)
    audit(actor, "user.created", username)
    set_user_role(user, role, actor=actor)
    return user


@transaction.atomic
def ensure_admin(username: str, password: str) -> tuple[object, bool]:
    """Create the first admin if missing; returns (user, created). Never resets a password."""
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, False
    user = User.objects.create_superuser(username=username, password=password, email="")
    set_user_role(user, roles.ADMIN)
    audit(None, "user.created", username, superuser=True)
    return user, True


# --- logins: every outcome that matters for security leaves an audit row -------------------
def login_failed(username: str, ip: str) -> None:
    """A wrong name or password: counted towards the lockouts, and audited."""
    locked = throttle.count_failure(username, ip)
    audit(None, "login.failed", username[:150], ip=ip)
    for scope, failures in locked:
        audit(
            None,
            "login.locked",
            username[:150] if scope == throttle.USER else ip,
            scope=scope,
            failures=failures,
            seconds=throttle.limits().lockout,
            ip=ip,
        )


def login_refused(username: str, ip: str, scope: str, retry_after: int) -> None:
    """An attempt refused by a lockout; only the first refusal of each lock is written, so a
    flood of attempts cannot flood the audit table."""
    if throttle.first_refusal(scope, username if scope == throttle.USER else ip):
        audit(
            None,
            "login.throttled",
            username[:150],
            ip=ip,
            scope=scope,
            retry_after=retry_after,
        )


def login_succeeded(user, ip: str) -> None:
    throttle.clear_user(user.get_username())
    audit(user, "login.succeeded", user.get_username(), ip=ip)
