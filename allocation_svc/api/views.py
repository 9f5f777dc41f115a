from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView

from allocation_svc import incidents, plans, prepositioning, roads
from allocation_svc.schemas import (
    AllocationIn,
    DeliveriesIn,
    GraphVersionOut,
    IncidentIn,
    IncidentOut,
    IncidentPage,
    IncidentPatch,
    IncidentQuery,
    PlanOut,
    ReplenishmentIn,
    ReplenishmentOut,
    RoadEventsIn,
    RoadsIn,
    RoadsQuery,
    RouteOut,
    RouteQuery,
    WarningIn,
    WarningOut,
)
from shared.schemas import page
from shared.web import (
    Blueprint,
    context,
    json_response,
)

blp = Blueprint("allocation", __name__, url_prefix="/api/v1",
                description="Roads, routes, incidents, allocation plans and restocking")


def allocation() -> plans.Allocation:
    return current_app.extensions["allocation"]


@blp.route("/roads")
class Roads(MethodView):
    @blp.response(200)
    def get(self):
        """The current road network as GeoJSON, with its graph_version"""
        with context().db.reading() as session:
            return json_response(roads.export_roads(session, allocation().graphs), 200)

    @blp.arguments(RoadsIn)
    @blp.arguments(RoadsQuery, location="query")
    @blp.command(GraphVersionOut, 200)
    def put(self, session, identity, _doc, query):
        """Replace the road network (admin); answers the new graph_version. A network without
        roads is refused unless `allow_empty=true`; `GET /roads` can be sent back as it is"""
        return roads.import_roads(session, identity, request.get_json(), query["allow_empty"])


@blp.route("/roads/events")
class RoadEvents(MethodView):
    @blp.arguments(RoadEventsIn)
    @blp.command(GraphVersionOut, 200)
    def post(self, session, identity, data):
        """Close, slow down or reopen roads; answers the new graph_version"""
        return roads.report_events(session, identity, data, allocation().inventory)


@blp.route("/routes")
class Routes(MethodView):
    @blp.arguments(RouteQuery, location="query")
    @blp.response(200, RouteOut)
    def get(self, query):
        """The fastest route between two road nodes or warehouse codes; 422 when none"""
        with context().db.reading() as session:
            graph = roads.ensure_network(session, allocation().graphs)
        return roads.route(graph, allocation().inventory, query["from_"], query["to"])


@blp.route("/incidents")
class Incidents(MethodView):
    @blp.arguments(IncidentQuery, location="query")
    @blp.response(200, IncidentPage)
    def get(self, query):
        """Incidents, newest last"""
        with context().db.reading() as session:
            rows = incidents.list_incidents(session, query.get("status"), query["limit"],
                                            query["cursor"])
            return page(rows, query["limit"])

    @blp.arguments(IncidentIn)
    @blp.command(IncidentOut)
    def post(self, session, identity, data):
        """Declare an incident: a first report may carry only its type and one site"""
        return incidents.declare(session, identity, data, allocation().inventory)


@blp.route("/incidents/<int:incident_id>")
class IncidentById(MethodView):
    @blp.response(200, IncidentOut)
    def get(self, incident_id):
        """One incident"""
        with context().db.reading() as session:
            return incidents.get(session, incident_id)

    @blp.arguments(IncidentPatch)
    @blp.command(IncidentOut, 200)
    def patch(self, session, identity, data, incident_id):
        """Grow the report: level, title, sites, population"""
        return incidents.amend(session, identity, incident_id, data, allocation().inventory)


@blp.route("/incidents/<int:incident_id>/allocations")
class Allocations(MethodView):
    @blp.arguments(AllocationIn)
    @blp.command(PlanOut, transaction=False, keeps_answer=True)
    def post(self, identity, data, incident_id, kept):
        """Plan which depot sends what, by which road; its stock is held at once"""
        return allocation().create(identity, incident_id, data, kept)


@blp.route("/allocations/<int:plan_id>")
class PlanById(MethodView):
    @blp.response(200, PlanOut)
    def get(self, plan_id):
        """One plan"""
        return allocation().get(plan_id)


@blp.route("/allocations/<int:plan_id>/dispatch")
class Dispatch(MethodView):
    @blp.command(PlanOut, 200, transaction=False, keeps_answer=True)
    def post(self, identity, plan_id, kept):
        """Dispatch: the held stock leaves the depots"""
        return allocation().dispatch(identity, plan_id, kept)


@blp.route("/allocations/<int:plan_id>/cancel")
class Cancel(MethodView):
    @blp.command(PlanOut, 200, transaction=False, keeps_answer=True)
    def post(self, identity, plan_id, kept):
        """Cancel a plan that was not dispatched: its hold is released"""
        return allocation().cancel(identity, plan_id, kept)


@blp.route("/allocations/<int:plan_id>/hold")
class HoldAgain(MethodView):
    @blp.command(PlanOut, 200, transaction=False, keeps_answer=True)
    def post(self, identity, plan_id, kept):
        """Hold again the stock of a plan whose hold ran out (`lapsed`): `planned` again, or 409
        if the stock went elsewhere meanwhile"""
        return allocation().hold_again(identity, plan_id, kept)


@blp.route("/allocations/<int:plan_id>/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveriesIn)
    @blp.command(PlanOut, 200)
    def post(self, session, identity, data, plan_id):
        """Record arrivals of shipments"""
        return plans.record_deliveries(session, identity, plan_id, data)


@blp.route("/allocations/<int:plan_id>/replan")
class Replan(MethodView):
    @blp.command(PlanOut, 200, transaction=False)
    def post(self, identity, plan_id):
        """After road events: reroute undelivered shipments, re-source those cut off"""
        return allocation().replan(identity, plan_id)


@blp.route("/warnings")
class Warnings(MethodView):
    @blp.arguments(WarningIn)
    @blp.command(WarningOut)
    def post(self, session, identity, data):
        """A weather warning: an area and a window, before anything happens"""
        return current_app.extensions["warnings"].issue(session, identity, data)


@blp.route("/warnings/<int:warning_id>")
class WarningById(MethodView):
    @blp.response(200, WarningOut)
    def get(self, warning_id):
        """A warning, with its pre-positioning proposal once asked for"""
        with current_app.extensions["warnings"].db.reading() as session:
            return prepositioning.get(session, warning_id)


@blp.route("/warnings/<int:warning_id>/prepositioning")
class Prepositioning(MethodView):
    @blp.command(ReplenishmentOut, transaction=False)
    def post(self, identity, warning_id):
        """Propose moving stock from the backbone to the warning's township centres before
        anything happens (execute it as a replenishment)"""
        return current_app.extensions["warnings"].preposition(identity, warning_id)


@blp.route("/replenishments")
class Replenishments(MethodView):
    @blp.arguments(ReplenishmentIn, required=False)  # no body: every depot below min
    @blp.command(ReplenishmentOut, transaction=False)
    def post(self, identity, data):
        """Plan transfers that bring depots below min back to target"""
        return current_app.extensions["restocking"].propose(identity, data)


@blp.route("/replenishments/<int:replenishment_id>")
class ReplenishmentById(MethodView):
    @blp.response(200, ReplenishmentOut)
    def get(self, replenishment_id):
        """One replenishment plan"""
        return current_app.extensions["restocking"].get(replenishment_id)


@blp.route("/replenishments/<int:replenishment_id>/execute")
class ExecuteReplenishment(MethodView):
    @blp.command(ReplenishmentOut, 200, transaction=False)
    def post(self, identity, replenishment_id):
        """Create the transfers of a replenishment plan"""
        return current_app.extensions["restocking"].execute(identity, replenishment_id)
