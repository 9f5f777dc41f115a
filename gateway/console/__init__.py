"""`/docs`: Swagger UI over the merged document, its assets served from the installed
flask-swagger-ui package (no CDN), with the page and its start-up script from here."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flask import Blueprint, abort, redirect, render_template, send_from_directory

HERE = Path(__file__).parent
bp = Blueprint("console", __name__, template_folder="templates")
ASSETS = "/docs/assets"


def swagger_dist() -> Path:
    return Path(str(resources.files("flask_swagger_ui") / "dist"))


@bp.get("/")
def index():
    return redirect("/docs", code=302)


@bp.get("/docs")
@bp.get("/docs/")
def docs():
    return render_template("docs.html", assets=ASSETS)


@bp.get(f"{ASSETS}/<path:name>")
def asset(name: str):
    if name == "docs-init.js":
        return send_from_directory(HERE / "static", name, max_age=300)
    if name.endswith((".js", ".css", ".png")):
        return send_from_directory(swagger_dist(), name, max_age=3600)
    abort(404)
