"""Entry point for the `celery` command (`celery -A workers.entry worker|beat`).

Like Flask's `make_celery.py`, this is the one module that builds an app when imported, because
the `celery` command needs an app object to load. It resolves the settings the same way the web
process does, so with no URLs set it joins the embedded servers under `TIMO_HOME`.
"""

from timo_hub.embedded import resolve_services
from timo_hub.settings import Settings
from workers.celery_app import create_celery_app

app = create_celery_app(resolve_services(Settings.from_env()))
