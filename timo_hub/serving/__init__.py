"""How the web process meets the network: gunicorn's worker and what it reads before the app."""
