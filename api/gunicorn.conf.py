"""gunicorn settings for `filiera serve`, which passes --bind and --workers on top.

Threaded workers (gthread) so that a slow client holds a thread, not a whole worker; request
line and header limits as TESTPLAN T8 asks. The app is built after fork in every worker
(no preload), so no database connection or sealing thread is shared between processes.

No access log (gunicorn's default, kept on purpose): page views are counted as aggregates, and a
log of requests would record who read which product page. If an operator turns one on anyway,
``api.accesslog.PrivateLogger`` keeps client addresses, user agents, referrers and request
headers out of it (docs/privacy.md).
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
accesslog = None
logger_class = "api.accesslog.PrivateLogger"
access_log_format = '%(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms %(p)s'
wsgi_app = "wsgi:app"
