from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView

from allocation_svc import incidents, plans, roads
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
    RouteOut,
    RouteQuery,
)
from shared.schemas import page
from shared.web import (
    Blueprint,
    context,
    current_identity,
    idempotency_request,
    json_response,
    run_command,
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
    @blp.response(200, GraphVersionOut)
    def put(self, _doc):
        """Replace the road network (admin); answers the new graph_version"""
        return run_command(roads.import_roads, request.get_json(), schema=GraphVersionOut(),
                           status=200)


@blp.route("/roads/events")
class RoadEvents(MethodView):
    @blp.arguments(RoadEventsIn)
    @blp.response(200, GraphVersionOut)
    def post(self, data):
        """Close, slow down or reopen roads; answers the new graph_version"""
        return run_command(roads.report_events, data, schema=GraphVersionOut(), status=200)


@blp.route("/routes")
class Routes(MethodView):
    @blp.arguments(RouteQuery, location="query")
    @blp.response(200, RouteOut)
    def get(self, query):
        """The fastest route between two road nodes or warehouse codes; 422 when none"""
        return allocation().route(query["from_"], query["to"])


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
    @blp.response(201, IncidentOut)
    def post(self, data):
        """Declare an incident: a first report may carry only its type and one site"""
        return run_command(incidents.declare, data, allocation().inventory,
                           schema=IncidentOut())


@blp.route("/incidents/<int:incident_id>")
class IncidentById(MethodView):
    @blp.response(200, IncidentOut)
    def get(self, incident_id):
        """One incident"""
        with context().db.reading() as session:
            return incidents.get(session, incident_id)

    @blp.arguments(IncidentPatch)
    @blp.response(200, IncidentOut)
    def patch(self, data, incident_id):
        """Grow the report: level, title, sites, population"""
        return run_command(incidents.amend, incident_id, data, allocation().inventory,
                           schema=IncidentOut(), status=200)


@blp.route("/incidents/<int:incident_id>/allocations")
class Allocations(MethodView):
    @blp.arguments(AllocationIn)
    @blp.response(201, PlanOut)
    def post(self, data, incident_id):
        """Plan which depot sends what, by which road; its stock is held at once"""
        key, fingerprint = idempotency_request(current_identity())
        return allocation().create(current_identity(), incident_id, data, key, fingerprint)


@blp.route("/allocations/<int:plan_id>")
class PlanById(MethodView):
    @blp.response(200, PlanOut)
    def get(self, plan_id):
        """One plan"""
        return allocation().get(plan_id)


@blp.route("/allocations/<int:plan_id>/dispatch")
class Dispatch(MethodView):
    @blp.response(200, PlanOut)
    def post(self, plan_id):
        """Dispatch: the held stock leaves the depots"""
        return allocation().dispatch(current_identity(), plan_id)


@blp.route("/allocations/<int:plan_id>/cancel")
class Cancel(MethodView):
    @blp.response(200, PlanOut)
    def post(self, plan_id):
        """Cancel a plan that was not dispatched: its hold is released"""
        return allocation().cancel(current_identity(), plan_id)


@blp.route("/allocations/<int:plan_id>/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveriesIn)
    @blp.response(200, PlanOut)
    def post(self, data, plan_id):
        """Record arrivals of shipments"""
        return run_command(plans.record_deliveries, plan_id, data, schema=PlanOut(), status=200)


@blp.route("/allocations/<int:plan_id>/replan")
class Replan(MethodView):
    @blp.response(200, PlanOut)
    def post(self, plan_id):
        """After road events: reroute undelivered shipments, re-source those cut off"""
        return allocation().replan(current_identity(), plan_id)


@blp.route("/replenishments")
class Replenishments(MethodView):
    @blp.arguments(ReplenishmentIn)
    @blp.response(201, ReplenishmentOut)
    def post(self, data):
        """Plan transfers that bring depots below min back to target"""
        return current_app.extensions["restocking"].propose(current_identity(), data)


@blp.route("/replenishments/<int:replenishment_id>")
class ReplenishmentById(MethodView):
    @blp.response(200, ReplenishmentOut)
    def get(self, replenishment_id):
        """One replenishment plan"""
        return current_app.extensions["restocking"].get(replenishment_id)


@blp.route("/replenishments/<int:replenishment_id>/execute")
class ExecuteReplenishment(MethodView):
    @blp.response(200, ReplenishmentOut)
    def post(self, replenishment_id):
        """Create the transfers of a replenishment plan"""
        return current_app.extensions["restocking"].execute(current_identity(), replenishment_id)
