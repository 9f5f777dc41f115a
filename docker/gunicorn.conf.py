"""gunicorn settings shared by every service role of the image (overridable by environment)."""

import os

bind = os.environ.get("EMSUPPLY_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("EMSUPPLY_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("EMSUPPLY_THREADS", "4"))
timeout = 60
graceful_timeout = 10
# gunicorn 27 opens a control socket under the home directory by default: not in a container
# (each replica would want the same path), and nothing here uses it.
control_socket_disable = True
accesslog = None  # the services log each request themselves, as JSON with its request id
errorlog = "-"
