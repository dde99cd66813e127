import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
application = get_wsgi_application()
# Import every view (and what they import: numpy, torch, plotly helpers) now, while the
# worker boots, rather than on the first request it serves, which then took ~14 s.
get_resolver().url_patterns  # noqa: B018 - the attribute access does the importing
# Everything loaded so far lives as long as the process; freezing it keeps the cyclic
# collector from rescanning it, which otherwise adds tens of ms to a large response
# whenever a full collection happens (measured in benchmarks/query.py).
gc.freeze()
