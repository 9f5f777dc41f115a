"""gunicorn settings shared by every role of the image (overridable by environment)."""

import os

bind = os.environ.get("EMSUPPLY_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("EMSUPPLY_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("EMSUPPLY_THREADS", "4"))
timeout = 60
graceful_timeout = 10
control_socket_disable = True
accesslog = None
