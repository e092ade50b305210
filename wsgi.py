"""WSGI entry point for gunicorn: ``gunicorn -c api/gunicorn.conf.py wsgi:app``.

Settings come from ``FILIERA_*`` environment variables (see README.md).
"""

from api import create_app

app = create_app()
