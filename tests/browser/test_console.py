"""The console in a real browser (issue 10): a commander signs in with a link, declares an
incident on the map, gets a plan and sees its routes, closes a road on one, re-plans and
dispatches; a keeper on a 360 x 740 phone issues more than there is and reads why, issues what
there is, then loses the connection mid-request and sees the queued movement land once. Neither
page asks anything of another host."""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

STATE = "window.emsupplyConsole.command"


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def map_point(page, js_latlng: str, arg) -> tuple[float, float]:
    """The page coordinates of a point on the map, after `js_latlng(s, arg)` placed the map."""
    return tuple(page.evaluate(f"""(arg) => {{
        const s = {STATE};
        const ll = ({js_latlng})(s, arg);
        const pt = s.map.latLngToContainerPoint(ll);
        const box = document.getElementById("map").getBoundingClientRect();
        return [box.left + pt.x, box.top + pt.y];
    }}""", arg))


DEPOT = """(s, code) => {
    const w = s.byCode[code];
    s.map.setView([w.lat, w.lon], 11, { animate: false });
    return [w.lat, w.lon];
}"""

# 40% along the road, with the road filling the map.
ROAD = """(s, id) => {
    const e = s.edges.get(id);
    s.map.fitBounds(e.layer.getBounds(), { maxZoom: 14, animate: false, padding: [80, 80] });
    const pts = e.latlngs.map((p) => s.map.latLngToContainerPoint(p));
    let total = 0;
    for (let i = 1; i < pts.length; i++) total += pts[i].distanceTo(pts[i - 1]);
    let left = total * 0.4;
    for (let i = 1; i < pts.length; i++) {
        const d = pts[i].distanceTo(pts[i - 1]);
        if (d >= left) {
            const step = pts[i].subtract(pts[i - 1]).multiplyBy(left / d);
            return s.map.containerPointToLatLng(pts[i - 1].add(step));
        }
        left -= d;
    }
    return e.latlngs[0];
}"""

PLAN_EDGES = f"""() => {{
    const s = {STATE};
    const legs = s.plan.trips?.length ? s.plan.trips
        : s.plan.shipments.filter((x) => x.status !== "stranded");
    const used = [];
    for (const x of legs) for (let i = 1; i < x.path.length; i++) {{
        used.push(s.pairs.get(`${{x.path[i - 1]}}|${{x.path[i]}}`));
    }}
    return used;
}}"""

# The middle road of the plan's longest route.
ROAD_ON_PLAN = f"""() => {{
    const s = {STATE};
    const legs = s.plan.trips?.length ? s.plan.trips : s.plan.shipments;
    const x = legs.reduce((a, b) => (b.path.length > a.path.length ? b : a));
    const i = Math.max(1, Math.floor(x.path.length / 2));
    return s.pairs.get(`${{x.path[i - 1]}}|${{x.path[i]}}`);
}}"""


def test_commander_declares_plans_closes_a_road_replans_and_dispatches(suite, open_page):
    check = expect()
    p = open_page(suite, "commander")
    page = p.page
    token = suite.tokens["commander"]
    page.goto(f"{suite.url}/#token={token}")
    check(page.locator("body")).to_have_attribute("data-map-ready", "yes", timeout=90_000)
    assert "token" not in page.url  # the link's fragment is gone from the address bar
    assert page.evaluate("localStorage.getItem('emsupply.token')") == token
    check(page.locator("h1")).to_have_text("黔东南州应急物资指挥台")
    check(page.locator("#who-role")).to_have_text("指挥员")
    check(page.locator("#who-name")).to_have_text("demo-commander")
    nodes, edges, depots = page.evaluate(
        f"() => [{STATE}.nodes.size, {STATE}.edges.size, {STATE}.depotLayers.size]")
    assert nodes > 3000 and edges > 4000 and depots > 2500  # the whole prefecture
    check(page.locator("#glance-level")).to_contain_text("州级")
    p.shot("map")

    # A thin first report: its type, and its site clicked on the map.
    page.click("#pick-site")
    check(page.locator("#map-hint")).to_be_visible()
    page.mouse.click(*map_point(page, DEPOT, "RJ-T01"))
    check(page.locator("#inc-site")).to_have_value("RJ-T01")
    page.select_option("#inc-type", "flood")
    page.click("#incident-form button[type=submit]")
    check(page.locator("#incident-current")).to_contain_text("洪涝")
    p.shot("incident")

    # A plan from people and days: its trips drawn as routes, a table, its figures.
    page.fill("#plan-population", "3000")
    page.fill("#plan-days", "3")
    page.click("#plan-submit")
    check(page.locator("#plan-table")).to_be_visible(timeout=90_000)
    check(page.locator("#plan-title")).to_contain_text("已规划")
    assert page.locator("path.plan-route").count() > 0
    assert page.locator("#plan-table tbody tr").count() > 0
    p.shot("plan")

    # Close a road the plan uses by clicking it: the plan is flagged; re-plan avoids it.
    road = page.evaluate(ROAD_ON_PLAN)
    assert road
    page.mouse.click(*map_point(page, ROAD, road))
    check(page.locator("#road-edge")).to_have_value(road)
    page.fill("#road-reason", "山体滑坡")
    page.click("#road-form button[value=closed]")
    check(page.locator("#plan-hit")).to_contain_text(road)
    assert page.evaluate(f"(id) => {STATE}.edges.get(id).status", road) == "closed"
    # Live: the change comes back through the polled event log.
    # (behind the seed's thousands of stock events the relay may still be shipping)
    check(page.locator("#events")).to_contain_text(f"{road} 封闭", timeout=120_000)
    page.evaluate(f"""() => {{
        const s = {STATE};
        const box = window.L.latLngBounds([]);
        s.routes.eachLayer((layer) => box.extend(layer.getBounds()));
        s.map.fitBounds(box.pad(0.15), {{ animate: false }});
    }}""")
    p.shot("road-closed")
    page.click("#plan-view [data-act=replan]")
    check(page.locator("#plan-moved")).to_be_visible(timeout=90_000)
    assert road not in page.evaluate(PLAN_EDGES)
    assert page.locator("path.plan-route").count() > 0
    p.shot("replanned")

    page.click("#plan-view [data-act=dispatch]")
    check(page.locator("#plan-title")).to_contain_text("已下达", timeout=60_000)
    # Live: the road change and the dispatch arrive through the polled event log.
    check(page.locator("#events")).to_contain_text("库存变动", timeout=20_000)
    p.shot("dispatched")

    page.click("#lang")
    check(page.locator("h1")).to_have_text("Qiandongnan Emergency Supplies")
    check(page.locator("#plan-title")).to_contain_text("dispatched")
    check(page.locator("#who-role")).to_have_text("commander")
    p.shot("english")
    page.click("#lang")
    check(page.locator("h1")).to_have_text("黔东南州应急物资指挥台")

    assert p.foreign_hosts() == set()
    assert p.errors == []


def test_keeper_on_a_phone_reads_the_refusal_and_a_lost_answer_counts_once(small_suite,
                                                                           open_page):
    check = expect()
    suite = small_suite
    p = open_page(suite, "keeper", 360, 740)
    page = p.page
    api = suite.api()
    stock = f"{suite.url}/api/v1/stock?warehouse=KL&item=SANDBAG"
    page.goto(f"{suite.url}/#token={suite.tokens['keeper']}")
    check(page.locator("#who-role")).to_have_text("仓管员")
    check(page.locator("#who-depots")).to_contain_text("KL")
    check(page.locator("#views")).to_be_hidden()  # a keeper has the depot view only
    check(page.locator("#k-stock tbody tr[data-item='SANDBAG']")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scroll
    p.shot("depot")

    # More than is available: refused, and the refusal says how much there is, in Chinese.
    available = api.get(stock, timeout=10).json()["items"][0]["available"]
    assert available > 0
    page.check("input[name=k-kind][value=issue]")
    page.select_option("#k-item", "SANDBAG")
    page.fill("#k-qty", str(available + 50))
    page.click("#k-submit")
    message = page.locator("#k-message")
    check(message).to_have_class("message error")
    check(message).to_contain_text("库存不足")
    check(message).to_contain_text(f"可用 {available:,}")
    p.shot("over-issue")

    # What is there.
    page.fill("#k-qty", str(available))
    page.click("#k-submit")
    check(message).to_have_class("message ok")
    assert api.get(stock, timeout=10).json()["items"][0]["available"] == 0
    p.shot("issued")

    # The connection drops after the server took a receipt, before its answer came back.
    reason = f"离线-{uuid.uuid4().hex[:8]}"
    keys: list[str | None] = []  # of every attempt to send the receipt
    attempts = []

    def sent(request):
        if request.method == "POST" and reason in (request.post_data or ""):
            keys.append(request.headers.get("idempotency-key"))
    page.on("request", sent)

    def flaky(route):
        attempts.append(route.request)
        if len(attempts) == 1:
            route.fetch()  # the server takes it ...
        route.abort("internetdisconnected")  # ... but the phone hears nothing

    page.route("**/api/v1/movements", flaky)
    page.check("input[name=k-kind][value=receipt]")
    page.fill("#k-qty", "7")
    page.fill("#k-reason", reason)
    page.click("#k-submit")
    check(page.locator("#k-queue-list li")).to_have_count(1)
    check(message).to_have_class("message queued")
    p.shot("queued")
    page.reload()  # still queued on the phone, and still retried
    check(page.locator("#k-queue-list li")).to_have_count(1, timeout=20_000)
    for _ in range(100):
        if len(attempts) >= 2:
            break
        page.wait_for_timeout(200)
    assert len(attempts) >= 2
    p.shot("still-queued")

    page.unroute("**/api/v1/movements")
    check(page.locator("#k-queue")).to_be_hidden(timeout=20_000)
    check(message).to_have_class("message ok")
    assert len(keys) >= 3 and len(set(keys)) == 1 and keys[0]  # one key for every attempt
    lines = api.get(f"{suite.url}/api/v1/movements?warehouse=KL&item=SANDBAG&limit=1000",
                    timeout=10).json()["items"]
    assert [line["quantity"] for line in lines if line["reason"] == reason] == [7]
    assert api.get(stock, timeout=10).json()["items"][0]["available"] == 7
    check(page.locator("#k-stock tbody tr[data-item='SANDBAG'] strong")).to_have_text("7")
    p.shot("landed")

    assert p.foreign_hosts() == set()
    assert p.errors == []
