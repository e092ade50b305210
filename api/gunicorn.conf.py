"""gunicorn settings for `filiera serve`, which passes --bind and --workers on top.

Threaded workers (gthread) so that a slow client holds a thread, not a whole worker; request
line and header limits as TESTPLAN T8 asks. The app is built after fork in every worker
(no preload), so no database connection or sealing thread is shared between processes.
"""

worker_class = "gthread"
threads = 4
preload_app = False
timeout = 60
graceful_timeout = 20
keepalive = 5
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
errorlog = "-"
wsgi_app = "wsgi:app"
