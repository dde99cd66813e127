# Importing the Celery app here binds @shared_task to it whenever Django starts.
from workers.celery import app as celery_app

__all__ = ("celery_app",)
