import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
application = get_wsgi_application()
# Everything loaded so far lives as long as the process; freezing it keeps the cyclic
# collector from rescanning it, which otherwise adds tens of ms to a large response
# whenever a full collection happens (measured in benchmarks/query.py).
gc.freeze()
