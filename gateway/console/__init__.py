"""The console at `/` (plain ES modules, every asset served from here: no CDN, no build step),
`GET /api/v1/whoami` for it, and `/docs`: Swagger UI over the merged document, its assets
served from the installed flask-swagger-ui package, with the page and its start-up script from
here. See docs/console.md."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flask import Blueprint, abort, render_template, send_from_directory
from flask.views import MethodView
from marshmallow import Schema, fields

from shared import web

HERE = Path(__file__).parent
STATIC = HERE / "static"
LEAFLET = "vendor/leaflet-1.9.4"
bp = Blueprint("console", __name__, template_folder="templates")
whoami_blp = web.Blueprint("whoami", __name__, url_prefix="/api/v1",
                           description="Who the bearer token speaks for")
ASSETS = "/docs/assets"

# Only what the gateway serves itself: scripts, styles, images, the API. Leaflet sets element
# styles from script (allowed); the map draws on a canvas and inline SVG (no data: fetches).
CONSOLE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                  "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
                  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class WhoAmIOut(Schema):
    name = fields.String(metadata={"description": "the token's name (the actor in the ledger)"})
    role = fields.String()
    warehouses = fields.List(fields.String(), metadata={
        "description": "a keeper's warehouses (everything below them is in scope too)"})


@whoami_blp.route("/whoami")
class WhoAmI(MethodView):
    @whoami_blp.response(200, WhoAmIOut)
    def get(self):
        """The caller: name, role and warehouses of the bearer token (any role)"""
        identity = web.current_identity()
        return {"name": identity.actor, "role": identity.role,
                "warehouses": list(identity.scope)}


def swagger_dist() -> Path:
    return Path(str(resources.files("flask_swagger_ui") / "dist"))


@bp.get("/")
def index():
    response = send_from_directory(STATIC, "console.html", max_age=0)
    response.headers["Content-Security-Policy"] = CONSOLE_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/console/<path:name>")
def console_asset(name: str):
    if not name.endswith((".js", ".css", ".json", ".png", ".svg")):
        abort(404)
    response = send_from_directory(STATIC, name, max_age=60)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/docs")
@bp.get("/docs/")
def docs():
    return render_template("docs.html", assets=ASSETS)


@bp.get(f"{ASSETS}/<path:name>")
def asset(name: str):
    if name == "docs-init.js":
        return send_from_directory(STATIC, name, max_age=300)
    if name.endswith((".js", ".css", ".png")):
        return send_from_directory(swagger_dist(), name, max_age=3600)
    abort(404)
