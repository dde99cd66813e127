import pytest


@pytest.fixture(autouse=True)
def _empty_cache():
    """Login lockouts count in Django's cache; each test starts without any."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
