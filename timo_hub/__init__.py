"""Shared runtime of the Timo Hub backend: settings, connections, embedded servers, migrations, CLI.

Everything here is infrastructure the product packages (`api`, `workers`, `events`, `analytics`)
stand on. The settings, database and embedded modules import none of those packages; only the CLI,
the composition root, does.
"""

__version__ = "1.0.0"
API_VERSION = "1.0.0"
