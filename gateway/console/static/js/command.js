// The commander's view: the prefecture drawn from the road graph and the depots' coordinates
// (no tiles, nothing from the internet), stock at a glance, incidents, plans and their routes,
// road closures, and the live event log.
import * as api from "./api.js";
import { onEvent, recent } from "./events.js";
import { current, nameOf, number, onChange, t, word } from "./i18n.js";
import { clock, el, esc, duration, problemText, table } from "./ui.js";

const $ = (id) => document.getElementById(id);
const names = { warehouse: (code) => nameOf(s.byCode[code]), item: (sku) => nameOf(s.itemBySku[sku]) };
const L = window.L;

const ROAD_STYLE = {
  expressway: { color: "#047857", weight: 4 },
  national: { color: "#c2410c", weight: 3.2 },
  provincial: { color: "#0e7490", weight: 2.4 },
  county: { color: "#57534e", weight: 1.8 },
  township: { color: "#78716c", weight: 1.4 },
  village: { color: "#a8a29e", weight: 0.9 },
};
const LEVEL_STYLE = {
  prefecture: { radius: 10, fill: "#7f1d1d" },
  county: { radius: 7, fill: "#1d4ed8" },
  township: { radius: 4.5, fill: "#0f766e" },
  village: { radius: 2.4, fill: "#334155" },
};
const ROUTE_COLORS = ["#c026d3", "#2563eb", "#ea580c", "#059669", "#9333ea", "#0891b2",
  "#db2777", "#65a30d"];
const INCIDENT_TYPES = ["flood", "rainstorm", "landslide", "geological", "hail", "snow_ice",
  "forest_fire", "fire", "earthquake", "other"];
const BOX = [[25.3, 107.3], [27.5, 109.6]];

const s = {
  map: null, renderer: null, items: [], itemBySku: {}, warehouses: [], byCode: {},
  nodes: new Map(), edges: new Map(), pairs: new Map(), depotLayers: new Map(),
  routes: null, sites: null, picked: null, selectedEdge: null, pickMode: false,
  incidents: [], incident: null, plan: null, glanceItem: null, belowMin: new Set(),
  depot: null, graphVersion: null,
};

export async function init(app) {
  app.command = s;
  setUpMap();
  setUpForms();
  const [items, warehouses, roads] = await Promise.all([
    api.all("/items"), api.all("/warehouses"), api.get("/roads")]);
  s.items = items;
  s.itemBySku = Object.fromEntries(items.map((i) => [i.sku, i]));
  s.warehouses = warehouses;
  s.byCode = Object.fromEntries(warehouses.map((w) => [w.code, w]));
  drawRoads(roads);
  drawDepots();
  fitData();
  fillSelects();
  await Promise.all([loadIncidents(), glance()]);
  onEvent(live);
  onChange(() => {
    fillSelects();
    renderIncident();
    renderPlan();
    renderGlance();
    renderDepot();
    renderLegend();
    renderEvents();
    showRoad(s.selectedEdge);
  });
  renderLegend();
  document.body.dataset.mapReady = "yes";
}

export function shown() {
  s.map?.invalidateSize();
}

// --- the map -----------------------------------------------------------------------------

function setUpMap() {
  s.renderer = L.canvas({ padding: 0.3, tolerance: 5 });
  s.map = L.map("map", {
    renderer: s.renderer, preferCanvas: true, zoomSnap: 0.25, zoomDelta: 0.5, minZoom: 7,
    maxZoom: 16, attributionControl: false, maxBounds: [[24.3, 106.3], [28.5, 110.6]],
  });
  s.map.fitBounds(BOX);
  for (const [name, z] of [["routes", 430], ["sites", 460]]) {
    s.map.createPane(name).style.zIndex = z;
  }
  s.routes = L.layerGroup().addTo(s.map);
  s.sites = L.layerGroup().addTo(s.map);
  s.routeRenderer = L.svg({ pane: "routes" });
  s.siteRenderer = L.svg({ pane: "sites" });
  s.map.on("click", (e) => {
    if (s.pickMode) pickNode(e.latlng);
  });
}

function fitData() {
  const points = [...s.nodes.values()];
  for (const w of s.warehouses) if (w.lat != null && w.lon != null) points.push([w.lat, w.lon]);
  if (points.length) s.map.fitBounds(L.latLngBounds(points).pad(0.02));
}

function roadStyle(edge) {
  const base = ROAD_STYLE[edge.road_class] || ROAD_STYLE.village;
  const selected = edge.id === s.selectedEdge ? 3 : 0;
  if (edge.status === "closed") return { color: "#dc2626", weight: Math.max(3, base.weight + 1.5) + selected, dashArray: "6 4", opacity: 1 };
  if (edge.status === "degraded") return { color: "#f59e0b", weight: Math.max(3, base.weight + 1) + selected, dashArray: "2 3", opacity: 1 };
  if (selected) return { color: "#1e40af", weight: base.weight + 4, dashArray: null, opacity: 1 };
  return { color: base.color, weight: base.weight, dashArray: null, opacity: 0.95 };
}

function drawRoads(doc) {
  s.graphVersion = doc.graph_version;
  for (const f of doc.features) {
    if (f.geometry.type === "Point") {
      const [lon, lat] = f.geometry.coordinates;
      s.nodes.set(f.properties.id, [lat, lon]);
    }
  }
  for (const f of doc.features) {
    if (f.geometry.type !== "LineString") continue;
    const edge = { ...f.properties };
    const latlngs = f.geometry.coordinates.map(([lon, lat]) => [lat, lon]);
    edge.latlngs = latlngs;
    const old = s.edges.get(edge.id);
    if (old) {
      Object.assign(old, edge);
      old.layer.setStyle(roadStyle(old));
      continue;
    }
    edge.layer = L.polyline(latlngs, { ...roadStyle(edge), renderer: s.renderer, interactive: true })
      .on("click", (e) => {
        L.DomEvent.stop(e);
        if (s.pickMode) return pickNode(e.latlng, edge);
        selectRoad(edge.id);
      })
      .addTo(s.map);
    s.edges.set(edge.id, edge);
    s.pairs.set(`${edge.from}|${edge.to}`, edge.id);
    s.pairs.set(`${edge.to}|${edge.from}`, edge.id);
  }
}

function depotStyle(w) {
  const level = LEVEL_STYLE[w.level] || LEVEL_STYLE.village;
  const low = s.belowMin.has(w.code);
  const style = { radius: level.radius, weight: 1.2, color: "#0f172a", fillColor: level.fill,
    fillOpacity: 1, dashArray: null };
  if (w.status === "under_construction") Object.assign(style, { fillColor: "#fff", color: "#c2410c", weight: 2.5, dashArray: "3 2" });
  if (w.status === "planned") Object.assign(style, { fillColor: "#fff", color: "#64748b", weight: 2, dashArray: "2 2" });
  if (w.status === "closed") Object.assign(style, { fillColor: "#94a3b8", color: "#0f172a" });
  if (low) Object.assign(style, { color: "#dc2626", weight: w.level === "village" ? 2.5 : 3.5, radius: level.radius + 1.5 });
  if (s.depot === w.code) Object.assign(style, { color: "#1e40af", weight: 4, radius: level.radius + 3 });
  return style;
}

function drawDepots() {
  const order = ["village", "township", "county", "prefecture"];
  const sorted = [...s.warehouses].sort((a, b) => order.indexOf(a.level) - order.indexOf(b.level));
  for (const w of sorted) {
    if (w.lat == null || w.lon == null) continue;
    const marker = L.circleMarker([w.lat, w.lon], { ...depotStyle(w), renderer: s.renderer })
      .on("click", (e) => {
        L.DomEvent.stop(e);
        if (s.pickMode) return pickSite(w.code);
        openDepot(w.code);
      })
      .bindTooltip(() => `${esc(nameOf(w))} (${w.code})`, { sticky: true })
      .addTo(s.map);
    s.depotLayers.set(w.code, marker);
  }
}

function restyleDepots() {
  for (const [code, marker] of s.depotLayers) marker.setStyle(depotStyle(s.byCode[code]));
}

function latlngOf(site) {
  if (site.warehouse && s.byCode[site.warehouse]?.lat != null) {
    const w = s.byCode[site.warehouse];
    return [w.lat, w.lon];
  }
  return s.nodes.get(site.node);
}

function renderLegend() {
  const line = (color, weight, cls, label) =>
    `<li><span class="sw-line ${cls}" data-c="${color}" data-w="${weight}"></span>${esc(label)}</li>`;
  const dot = (color, size, cls, label) =>
    `<li><span class="sw-dot ${cls}" data-c="${color}" data-r="${size}"></span>${esc(label)}</li>`;
  const roads = Object.entries(ROAD_STYLE).map(([k, v]) =>
    line(v.color, Math.max(2, v.weight), "", word("road_class", k)));
  roads.push(line("#dc2626", 3, "dash", word("road_status", "closed")));
  roads.push(line("#f59e0b", 3, "dot", word("road_status", "degraded")));
  roads.push(line("#c026d3", 5, "", t("route")));
  const levels = Object.entries(LEVEL_STYLE).map(([k, v]) =>
    dot(v.fill, Math.max(6, v.radius * 2), "", word("level", k)));
  levels.push(dot("#c2410c", 12, "hollow", word("status", "under_construction")));
  levels.push(dot("#64748b", 12, "hollow", word("status", "planned")));
  levels.push(dot("#dc2626", 12, "ring", t("below_min")));
  levels.push(dot("#dc2626", 14, "site", t("incident_site_short")));
  const box = $("legend");
  box.innerHTML = `<ul>${roads.join("")}</ul><ul>${levels.join("")}</ul>`;
  // Colours through the CSSOM: the page's CSP allows no inline style attributes.
  for (const span of box.querySelectorAll("[data-c]")) {
    span.style.setProperty("--c", span.dataset.c);
    if (span.dataset.w) span.style.setProperty("--w", `${span.dataset.w}px`);
    if (span.dataset.r) span.style.setProperty("--r", `${span.dataset.r}px`);
  }
}

function hint(text) {
  $("map-hint").textContent = text || "";
  $("map-hint").hidden = !text;
}

// --- stock at a glance ---------------------------------------------------------------------

function fillSelects() {
  const keepItem = $("glance-item").value || s.glanceItem || s.items[0]?.sku;
  $("glance-item").innerHTML = s.items.map((i) =>
    `<option value="${esc(i.sku)}">${esc(nameOf(i))} (${esc(i.sku)})</option>`).join("");
  $("glance-item").value = keepItem;
  const type = $("inc-type").value;
  $("inc-type").innerHTML = INCIDENT_TYPES.map((k) => `<option value="${k}">${esc(word("incident_type", k))}</option>`).join("");
  if (type) $("inc-type").value = type;
  $("site-list").innerHTML = s.warehouses.filter((w) => w.level !== "village" || s.warehouses.length < 800)
    .map((w) => `<option value="${esc(w.code)}">${esc(nameOf(w))}</option>`).join("");
  for (const select of document.querySelectorAll(".plan-item")) fillItemSelect(select);
}

function fillItemSelect(select) {
  const keep = select.value;
  select.innerHTML = s.items.map((i) => `<option value="${esc(i.sku)}">${esc(nameOf(i))}</option>`).join("");
  if (keep) select.value = keep;
}

async function glance() {
  const sku = $("glance-item").value || s.items[0]?.sku;
  if (!sku) return;
  s.glanceItem = sku;
  const [county, level, low] = await Promise.all([
    api.get(`/stock/summary?item=${encodeURIComponent(sku)}&by=county`),
    api.get(`/stock/summary?item=${encodeURIComponent(sku)}&by=level`),
    api.all(`/stock?item=${encodeURIComponent(sku)}&below_min=true`),
  ]);
  s.glanceData = { county: county.rows, level: level.rows, low };
  s.belowMin = new Set(low.map((r) => r.warehouse));
  restyleDepots();
  renderGlance();
}

function renderGlance() {
  const d = s.glanceData;
  if (!d) return;
  const unit = s.itemBySku[s.glanceItem]?.unit || "";
  const rows = (list, label) => list.map((r) => [label(r.group), number(r.available),
    number(r.on_hand), number(r.min), r.available < r.min ? `<span class="flag">${esc(t("below_min"))}</span>` : ""]);
  const head = [t("group"), t("available"), t("on_hand"), t("min"), ""];
  const levelOrder = ["prefecture", "county", "township", "village"];
  const byLevel = [...d.level].sort((a, b) => levelOrder.indexOf(a.group) - levelOrder.indexOf(b.group));
  const lows = d.low.slice().sort((a, b) => (a.available - a.min) - (b.available - b.min));
  $("glance").innerHTML = `
    <h3>${esc(t("by_level"))} <small>(${esc(word("unit", unit))})</small></h3>
    ${table(head, rows(byLevel, (g) => esc(word("level", g))), "glance-level")}
    <h3>${esc(t("by_county"))}</h3>
    ${table(head, rows(d.county, (g) => esc(nameOf(s.byCode[g]) || g)), "glance-county")}
    <h3>${esc(t("depots_below_min", { n: number(lows.length) }))}</h3>
    <ul class="low-list">${lows.slice(0, 12).map((r) => `<li><button type="button" class="link" data-depot="${esc(r.warehouse)}">${esc(nameOf(s.byCode[r.warehouse]) || r.warehouse)}</button> ${number(r.available)} / ${esc(t("min"))} ${number(r.min)}</li>`).join("")}</ul>
    ${lows.length > 12 ? `<p class="muted">${esc(t("and_more", { n: number(lows.length - 12) }))}</p>` : ""}`;
  for (const b of $("glance").querySelectorAll("[data-depot]")) {
    b.addEventListener("click", () => openDepot(b.dataset.depot, true));
  }
}

// --- a depot's stock card ------------------------------------------------------------------

async function openDepot(code, fly = false) {
  s.depot = code;
  restyleDepots();
  const w = s.byCode[code];
  if (fly && w?.lat != null) s.map.setView([w.lat, w.lon], Math.max(s.map.getZoom(), 10));
  $("sec-depot").open = true;
  s.depotRows = null;
  renderDepot();
  try {
    s.depotRows = await api.all(`/stock?warehouse=${encodeURIComponent(code)}`);
  } catch (err) {
    s.depotRows = { error: problemText(err, names) };
  }
  renderDepot();
}

function renderDepot() {
  if (!s.depot) return;
  const w = s.byCode[s.depot] || { code: s.depot };
  const head = `<h3>${esc(nameOf(w))} <small>${esc(w.code)} · ${esc(word("level", w.level))} · ${esc(word("status", w.status))}</small></h3>`;
  if (!s.depotRows) {
    $("depot-card").innerHTML = `${head}<p class="muted">${esc(t("loading"))}</p>`;
  } else if (s.depotRows.error) {
    $("depot-card").innerHTML = `${head}<p class="error">${esc(s.depotRows.error)}</p>`;
  } else {
    const rows = s.depotRows.map((r) => [esc(nameOf(s.itemBySku[r.item]) || r.item), number(r.on_hand),
      number(r.reserved), number(r.available), number(r.min),
      r.available < r.min ? `<span class="flag">${esc(t("below_min"))}</span>` : ""]);
    $("depot-card").innerHTML = head + (rows.length
      ? table([t("item"), t("on_hand"), t("reserved"), t("available"), t("min"), ""], rows, "depot-stock")
      : `<p class="muted">${esc(t("no_stock"))}</p>`);
  }
  $("depot-card").classList.remove("muted");
}

// --- incidents ------------------------------------------------------------------------------

function setUpForms() {
  $("glance-item").addEventListener("change", () => glance().catch(showError));
  $("pick-site").addEventListener("click", () => setPicking(!s.pickMode));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && s.pickMode) setPicking(false);
  });
  $("report-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saveReport().catch(showError);
  });
  $("incident-form").addEventListener("submit", (e) => {
    e.preventDefault();
    declare().catch(showError);
  });
  $("inc-open").addEventListener("change", () => {
    s.incident = s.incidents.find((i) => String(i.id) === $("inc-open").value) || null;
    s.plan = null;
    s.planHit = [];
    s.moved = null;
    renderIncident();
    renderPlan();
  });
  for (const radio of document.querySelectorAll("input[name=plan-mode]")) {
    radio.addEventListener("change", () => {
      const people = document.querySelector("input[name=plan-mode]:checked").value === "people";
      $("plan-people").hidden = !people;
      $("plan-items").hidden = people;
      if (!people && !document.querySelector(".plan-line")) addPlanLine();
    });
  }
  $("plan-add-line").addEventListener("click", () => addPlanLine());
  $("plan-form").addEventListener("submit", (e) => {
    e.preventDefault();
    requestPlan().catch(showError);
  });
  $("road-form").addEventListener("submit", (e) => {
    e.preventDefault();
    roadEvent(e.submitter?.value || "closed").catch(showError);
  });
  $("road-edge").addEventListener("change", () => selectRoad($("road-edge").value.trim(), false));
}

function setPicking(on) {
  s.pickMode = on;
  $("pick-site").setAttribute("aria-pressed", String(on));
  document.body.dataset.picking = on ? "yes" : "no";
  hint(on ? t("pick_hint") : "");
}

function pickSite(value) {
  $("inc-site").value = value;
  setPicking(false);
  const latlng = latlngOf(s.byCode[value] ? { warehouse: value } : { node: value });
  s.picked?.remove();
  if (latlng) {
    s.picked = L.circleMarker(latlng, { renderer: s.siteRenderer, radius: 11, color: "#dc2626",
      weight: 3, fillOpacity: 0.15, dashArray: "4 3", interactive: false, className: "picked-site" }).addTo(s.map);
  }
  $("inc-site").focus();
}

function pickNode(latlng, edge) {
  // The node nearest the click: an end of the clicked road, else of any road.
  let best = null;
  let bestD = Infinity;
  const ids = edge ? [edge.from, edge.to] : s.nodes.keys();
  for (const id of ids) {
    const p = s.nodes.get(id);
    if (!p) continue;
    const d = s.map.distance(latlng, p);
    if (d < bestD) {
      best = id;
      bestD = d;
    }
  }
  if (best) pickSite(best);
}

async function loadIncidents() {
  s.incidents = await api.all("/incidents?status=open");
  if (s.incident) s.incident = s.incidents.find((i) => i.id === s.incident.id) || s.incident;
  renderIncident();
}

function renderIncident() {
  $("inc-open").innerHTML = `<option value="">${esc(t("choose"))}</option>` + s.incidents.slice().reverse()
    .map((i) => `<option value="${i.id}">#${i.id} ${esc(word("incident_type", i.type))} · ${esc(siteName(i.sites[0]))}</option>`).join("");
  $("inc-open").value = s.incident ? String(s.incident.id) : "";
  s.sites.clearLayers();
  for (const inc of s.incidents) {
    for (const site of inc.sites) {
      const ll = latlngOf(site);
      if (!ll) continue;
      const current = s.incident?.id === inc.id;
      L.circleMarker(ll, { renderer: s.siteRenderer, radius: current ? 12 : 8, color: "#fff", weight: 3,
        fillColor: "#dc2626", fillOpacity: 1, interactive: false, className: "incident-site" }).addTo(s.sites);
    }
  }
  const box = $("incident-current");
  $("report").hidden = !s.incident;
  if (!s.incident) {
    box.innerHTML = `<p class="muted">${esc(t("no_incident"))}</p>`;
    $("plan-submit").disabled = true;
    return;
  }
  const i = s.incident;
  const population = i.sites.reduce((n, site) => n + (site.population || 0), 0);
  box.innerHTML = `<p class="current"><strong>#${i.id} ${esc(word("incident_type", i.type))}</strong>
    ${i.title ? esc(i.title) : ""} · ${i.sites.map((x) => esc(siteName(x))).join(", ")}
    ${population ? ` · ${esc(t("people_n", { n: number(population) }))}` : ""}</p>`;
  $("plan-submit").disabled = false;
  if (population && !$("plan-population").value) $("plan-population").value = population;
  if (s.reportFor !== i.id) {
    s.reportFor = i.id;
    $("rep-level").value = i.level || "";
    $("rep-title").value = i.title || "";
    $("rep-population").value = i.sites[0]?.population || "";
  }
}

function siteBody(site, population) {
  const out = { id: site.id, population };
  if (site.warehouse) out.warehouse = site.warehouse;
  else out.node = site.node;
  return out;
}

// The full report, later: level, title, the first site's population.
async function saveReport() {
  const i = s.incident;
  if (!i) return;
  const body = { level: $("rep-level").value || null };
  const title = $("rep-title").value.trim();
  if (title) body.title = title;
  const population = parseInt($("rep-population").value, 10);
  if (population >= 0) {
    body.sites = i.sites.map((site, n) => siteBody(site, n === 0 ? population : site.population || 0));
  }
  s.incident = await api.call("PATCH", `/incidents/${i.id}`, body, { key: api.newKey() });
  s.incidents = s.incidents.map((x) => (x.id === i.id ? s.incident : x));
  s.reportFor = null;
  if (population >= 0) $("plan-population").value = population;
  renderIncident();
  flash(t("report_saved", { id: i.id }));
}

function siteName(site) {
  if (!site) return "";
  if (site.warehouse) return `${nameOf(s.byCode[site.warehouse]) || site.warehouse}`;
  return `${t("road_node")} ${site.node}`;
}

async function declare() {
  const value = $("inc-site").value.trim();
  if (!value) return;
  const site = s.byCode[value] ? { warehouse: value } : { node: value };
  const body = { type: $("inc-type").value, sites: [site] };
  const title = $("inc-title").value.trim();
  if (title) body.title = title;
  const incident = await api.post("/incidents", body, { key: api.newKey() });
  s.incidents.push(incident);
  s.incident = incident;
  s.plan = null;
  s.picked?.remove();
  $("inc-title").value = "";
  renderIncident();
  renderPlan();
  flash(t("incident_declared", { id: incident.id }));
  $("plan-population").focus();
}

// --- plans ----------------------------------------------------------------------------------

function addPlanLine() {
  const line = el(`<div class="plan-line row">
      <label><span class="sr" data-i18n="item">${esc(t("item"))}</span><select class="plan-item"></select></label>
      <label><span class="sr" data-i18n="quantity">${esc(t("quantity"))}</span><input class="plan-qty" type="number" min="1" step="1" inputmode="numeric" required></label>
      <button type="button" class="plan-remove" aria-label="${esc(t("remove"))}" data-i18n-label="remove">×</button>
    </div>`);
  fillItemSelect(line.querySelector(".plan-item"));
  line.querySelector(".plan-remove").addEventListener("click", () => line.remove());
  $("plan-lines").append(line);
  line.querySelector("select").focus();
}

async function requestPlan() {
  const incident = s.incident;
  if (!incident) return;
  const body = { policy: $("plan-policy").value };
  const people = document.querySelector("input[name=plan-mode]:checked").value === "people";
  if (people) {
    const population = parseInt($("plan-population").value, 10);
    const days = parseInt($("plan-days").value, 10);
    if (!(population > 0) || !(days > 0)) throw new Error(t("need_people_days"));
    const sites = incident.sites.map((site, index) =>
      siteBody(site, index === 0 ? population : site.population || 0));
    if (incident.sites[0].population !== population) {
      s.incident = await api.call("PATCH", `/incidents/${incident.id}`, { sites }, { key: api.newKey() });
      renderIncident();
    }
    body.population_days = days;
  } else {
    body.demands = [...document.querySelectorAll(".plan-line")].map((line) => ({
      site: incident.sites[0].id, item: line.querySelector(".plan-item").value,
      quantity: parseInt(line.querySelector(".plan-qty").value, 10),
    })).filter((d) => d.quantity > 0);
  }
  busy(true);
  hint(t("planning"));
  try {
    s.plan = await api.post(`/incidents/${incident.id}/allocations`, body, { key: api.newKey() });
  } finally {
    busy(false);
    hint("");
  }
  s.planHit = [];
  s.moved = null;
  renderPlan(true);
  glance().catch(() => {});
}

function busy(on) {
  document.body.dataset.busy = on ? "yes" : "no";
  for (const b of document.querySelectorAll("#sec-plan button")) b.disabled = on;
}

function tripKey(x) {
  return `${x.from}>${x.to}>${x.item || ""}>${(x.path || []).join(",")}`;
}

async function planAction(action) {
  const before = new Set(legs(s.plan).map(tripKey));
  busy(true);
  try {
    s.plan = await api.post(`/allocations/${s.plan.id}/${action}`, undefined, { key: api.newKey() });
  } finally {
    busy(false);
  }
  if (action === "replan") {
    const after = legs(s.plan).map(tripKey);
    const kept = after.filter((k) => before.has(k)).length;
    s.moved = { changed: after.length - kept, kept };
    s.planHit = [];
  }
  renderPlan(action === "replan");
  flash(t(`plan_${action}_done`, { id: s.plan.id }));
  glance().catch(() => {});
}

function legs(plan) {
  if (plan.trips?.length) {
    return plan.trips.map((trip) => ({ ...trip, what: (trip.lines || []).map((l) => `${nameOf(s.itemBySku[l.item]) || l.item} × ${number(l.quantity)}`).join(current() === "zh" ? "，" : ", ") }));
  }
  return (plan.shipments || []).filter((x) => x.status !== "stranded").map((x) => ({
    ...x, what: `${nameOf(s.itemBySku[x.item]) || x.item} × ${number(x.quantity)}` }));
}

function renderPlan(fit = false) {
  s.routes.clearLayers();
  const box = $("plan-view");
  const plan = s.plan;
  if (!plan) {
    box.innerHTML = "";
    return;
  }
  const trips = legs(plan);
  const site = (id) => siteName(s.incident?.sites.find((x) => x.id === id) || { node: id }) || id;
  const start = Date.now();
  const rows = trips.map((x, i) => [
    `<span class="sw-key" data-c="${i % ROUTE_COLORS.length}"></span>${esc(nameOf(s.byCode[x.from]) || x.from)}`,
    esc(site(x.to)),
    esc(x.what) + (x.vehicle ? `<br><small>${esc(word("vehicle", x.vehicle))}${x.weight_kg != null ? ` · ${number(Math.round(x.weight_kg))} kg` : ""}</small>` : ""),
    `${esc(duration(x.minutes))}<br><small>${esc(clock(start + x.minutes * 60000))}</small>`,
    `${number(Math.round(x.distance_km * 10) / 10)} km`,
  ]);
  const figures = [];
  if (plan.cost != null) figures.push(`${t("cost")} ${number(Math.round(plan.cost))}`);
  if (plan.objective != null) figures.push(`${t("objective")} ${number(Math.round(plan.objective))}`);
  if (plan.bound != null) figures.push(`${t("bound")} ${number(Math.round(plan.bound))}`);
  if (plan.gap != null) figures.push(`${t("gap")} ${(plan.gap * 100).toFixed(2)}%`);
  const unmet = (plan.unmet || []).map((u) => `<li><strong>${esc(nameOf(s.itemBySku[u.item]) || u.item)} × ${number(u.quantity)}</strong>
    → ${esc(site(u.site))}: ${esc(word("unmet", u.reason))}${u.detail ? `<br><small>${esc(u.detail)}</small>` : ""}</li>`);
  const can = { dispatch: plan.status === "planned", cancel: plan.status === "planned",
    replan: plan.status === "planned" || plan.status === "dispatched" };
  box.innerHTML = `
    <h3 id="plan-title">${esc(t("plan_n", { id: plan.id }))} · <span class="status status-${esc(plan.status)}">${esc(word("plan_status", plan.status))}</span></h3>
    <p class="muted">${esc(t("graph_version"))} ${plan.graph_version}${figures.length ? ` · ${esc(figures.join(" · "))}` : ""}</p>
    ${plan.failure ? `<p class="error">${esc(plan.failure)}</p>` : ""}
    ${s.planHit?.length ? `<p class="error" id="plan-hit" role="alert">${esc(t("plan_hit", { edges: s.planHit.join(", ") }))}</p>` : ""}
    ${s.moved ? `<p class="current" id="plan-moved">${esc(t("plan_moved", s.moved))}</p>` : ""}
    <div class="row actions">
      <button type="button" class="primary" data-act="dispatch" ${can.dispatch ? "" : "disabled"}>${esc(t("dispatch"))}</button>
      <button type="button" data-act="replan" ${can.replan ? "" : "disabled"}>${esc(t("replan"))}</button>
      <button type="button" class="danger" data-act="cancel" ${can.cancel ? "" : "disabled"}>${esc(t("cancel_plan"))}</button>
    </div>
    <h4>${esc(plan.trips?.length ? t("trips_n", { n: trips.length }) : t("shipments_n", { n: trips.length }))}</h4>
    ${trips.length ? table([t("from"), t("to"), t("load"), t("arrives"), t("distance")], rows, "plan-table") : `<p class="muted">${esc(t("nothing_sent"))}</p>`}
    ${unmet.length ? `<h4 class="warn">${esc(t("unmet"))}</h4><ul class="unmet">${unmet.join("")}</ul>` : ""}`;
  for (const key of box.querySelectorAll(".sw-key")) key.style.background = ROUTE_COLORS[key.dataset.c];
  for (const b of box.querySelectorAll("[data-act]")) {
    b.addEventListener("click", () => planAction(b.dataset.act).catch(showError));
  }
  drawRoutes(trips, fit);
  // Closed or slowed roads under the plan's routes, drawn above them.
  for (const id of s.planHit || []) {
    const edge = s.edges.get(id);
    if (!edge) continue;
    const style = roadStyle({ ...edge, id: null });
    L.polyline(edge.latlngs, { ...style, renderer: s.routeRenderer, weight: 7, opacity: 1,
      interactive: false, className: "plan-hit-road" }).addTo(s.routes);
  }
}

function drawRoutes(trips, fit) {
  const seen = new Set();
  const bounds = [];
  trips.forEach((x, i) => {
    const key = (x.path || []).join(">");
    const latlngs = pathLatLngs(x.path || []);
    if (latlngs.length < 2) return;
    bounds.push(...latlngs);
    if (seen.has(key)) return;
    seen.add(key);
    const color = ROUTE_COLORS[i % ROUTE_COLORS.length];
    L.polyline(latlngs, { renderer: s.routeRenderer, color: "#fff", weight: 9, opacity: 0.85, interactive: false, className: "plan-route-casing" }).addTo(s.routes);
    L.polyline(latlngs, { renderer: s.routeRenderer, color, weight: 5, opacity: 0.95, interactive: false, className: "plan-route" }).addTo(s.routes);
  });
  if (fit && bounds.length) s.map.fitBounds(L.latLngBounds(bounds).pad(0.25), { maxZoom: 12 });
}

// A path of node ids drawn along its roads' own geometry (straight between nodes otherwise).
function pathLatLngs(path) {
  const out = [];
  for (let i = 0; i < path.length; i++) {
    if (i === 0) {
      const p = s.nodes.get(path[0]);
      if (p) out.push(p);
      continue;
    }
    const edge = s.edges.get(s.pairs.get(`${path[i - 1]}|${path[i]}`));
    if (edge?.latlngs?.length) {
      const line = edge.from === path[i - 1] ? edge.latlngs : edge.latlngs.slice().reverse();
      out.push(...line.slice(1));
    } else {
      const p = s.nodes.get(path[i]);
      if (p) out.push(p);
    }
  }
  return out;
}

// The roads a plan's routes use, by edge id.
function planEdges(plan) {
  const used = new Set();
  for (const x of plan ? legs(plan) : []) {
    const path = x.path || [];
    for (let i = 1; i < path.length; i++) {
      const id = s.pairs.get(`${path[i - 1]}|${path[i]}`);
      if (id) used.add(id);
    }
  }
  return used;
}

// --- roads ----------------------------------------------------------------------------------

function selectRoad(id, focus = true) {
  const previous = s.selectedEdge;
  s.selectedEdge = s.edges.has(id) ? id : null;
  if (previous && s.edges.has(previous)) s.edges.get(previous).layer.setStyle(roadStyle(s.edges.get(previous)));
  if (s.selectedEdge) {
    const edge = s.edges.get(id);
    edge.layer.setStyle(roadStyle(edge));
    edge.layer.bringToFront();
    $("road-edge").value = id;
    $("sec-road").open = true;
    if (focus) $("road-reason").focus();
  }
  showRoad(s.selectedEdge);
}

function showRoad(id) {
  const edge = id && s.edges.get(id);
  $("road-info").innerHTML = edge
    ? `${esc(word("road_class", edge.road_class))} · ${number(edge.length_km)} km · <span class="status status-${esc(edge.status)}">${esc(word("road_status", edge.status))}</span>${edge.reason ? ` · ${esc(edge.reason)}` : ""}`
    : "";
}

async function roadEvent(status) {
  const edge = $("road-edge").value.trim();
  if (!edge) return;
  const event = { edge, status };
  const reason = $("road-reason").value.trim();
  if (reason) event.reason = reason;
  if (status === "degraded") event.speed_factor = parseFloat($("road-speed").value) || 0.5;
  const answer = await api.post("/roads/events", { events: [event] }, { key: api.newKey() });
  applyRoadEvents(answer.events || [event]);
  s.graphVersion = answer.graph_version;
  flash(t("road_done", { edge, status: word("road_status", status) }));
}

function applyRoadEvents(list) {
  const used = s.plan && ["planned", "dispatched"].includes(s.plan.status) ? planEdges(s.plan) : null;
  let hit = false;
  for (const ev of list) {
    const edge = s.edges.get(ev.edge);
    if (!edge) continue;
    if (used?.has(ev.edge) && ev.status !== "open" && !s.planHit?.includes(ev.edge)) {
      s.planHit = [...(s.planHit || []), ev.edge];
      hit = true;
    }
    edge.status = ev.status;
    edge.reason = ev.reason;
    edge.layer.setStyle(roadStyle(edge));
  }
  showRoad(s.selectedEdge);
  if (hit) renderPlan();
}

// --- live -----------------------------------------------------------------------------------

let glanceTimer = null;

function live(event, old) {
  renderEvents();
  if (old) return;
  const d = event.data || {};
  if (event.type === "road.changed") {
    if (d.kind === "events") applyRoadEvents(d.events || []);
    else api.get("/roads").then(drawRoads).catch(() => {});
  } else if (event.type === "incident.declared") {
    loadIncidents().catch(() => {});
  } else if (event.type.startsWith("allocation.") && s.plan && d.id === s.plan.id) {
    api.get(`/allocations/${s.plan.id}`).then((plan) => {
      const changed = plan.status !== s.plan.status || plan.graph_version !== s.plan.graph_version;
      s.plan = plan;
      if (changed) renderPlan();
    }).catch(() => {});
  } else if (event.type === "stock.changed" || event.type === "stock.below_min") {
    if (d.item === s.glanceItem) {
      clearTimeout(glanceTimer);
      glanceTimer = setTimeout(() => glance().catch(() => {}), 800);
    }
    if (d.warehouse === s.depot) openDepot(s.depot).catch(() => {});
  }
}

function describe(event) {
  const d = event.data || {};
  const wh = (code) => nameOf(s.byCode[code]) || code;
  const item = (sku) => nameOf(s.itemBySku[sku]) || sku;
  switch (event.type) {
    case "stock.changed":
      return `${wh(d.warehouse)} · ${item(d.item)} ${word("kind", d.kind)} ${number(d.quantity)} → ${number(d.available)}`;
    case "stock.below_min":
      return `${wh(d.warehouse)} · ${item(d.item)} ${number(d.on_hand)} < ${number(d.min)}`;
    case "road.changed":
      return d.kind === "events"
        ? (d.events || []).map((e) => `${e.edge} ${word("road_status", e.status)}${e.reason ? ` (${e.reason})` : ""}`).join(current() === "zh" ? "，" : ", ")
        : t("road_network_loaded");
    case "incident.declared":
      return `#${d.id} ${word("incident_type", d.type)}`;
    case "incident.updated":
      return `#${d.id}`;
    case "incident.escalated":
      return `#${d.id} ${d.from} → ${d.to}`;
    case "catalog.changed":
      return d.entity === "item" ? item(d.code) : wh(d.code);
    case "transfer.created":
    case "transfer.received":
      return `#${d.id ?? ""} ${wh(d.source)} → ${wh(d.destination)}`;
    default:
      if (event.type.startsWith("allocation.")) return t("plan_n", { id: d.id });
      return "";
  }
}

function renderEvents() {
  $("events").innerHTML = recent().reverse().map((e) => `<li>
    <time datetime="${esc(e.at)}">${esc(clock(Date.parse(e.at), true))}</time>
    <strong>${esc(word("event", e.type))}</strong> ${esc(describe(e))}</li>`).join("");
}

// --- messages -------------------------------------------------------------------------------

function flash(text) {
  hint(text);
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => hint(""), 5000);
}

function showError(err) {
  hint("");
  const box = $("map-hint");
  box.textContent = problemText(err, names);
  box.hidden = false;
  box.classList.add("error");
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => {
    box.classList.remove("error");
    hint("");
  }, 8000);
}

