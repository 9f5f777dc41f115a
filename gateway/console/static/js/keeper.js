// The keeper's view, for a 360-px phone: the keeper's depots and their stock, and receive,
// issue, transfer and count in a few taps. Every action is queued on the phone first (with its
// Idempotency-Key) and sent from there, so a lost connection loses nothing and counts nothing
// twice; the server's refusal is shown in words.
import * as api from "./api.js";
import { onEvent } from "./events.js";
import { current, nameOf, number, onChange, t, word } from "./i18n.js";
import * as queue from "./queue.js";
import { esc, problemText } from "./ui.js";

const $ = (id) => document.getElementById(id);
const names = { warehouse: (code) => nameOf(k.byCode[code]), item: (sku) => nameOf(k.itemBySku[sku]) };
const k = { me: null, items: [], itemBySku: {}, depots: [], byCode: {}, depot: null, rows: [],
  ledger: [], incoming: [], message: null };

export async function init(app) {
  app.keeper = k;
  k.me = app.me;
  $("k-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  for (const radio of document.querySelectorAll("input[name=k-kind]")) {
    radio.addEventListener("change", renderKind);
  }
  $("k-depot").addEventListener("change", () => openDepot($("k-depot").value));
  $("k-item").addEventListener("change", () => {
    renderKind();
    loadLedger().catch(() => {});
  });
  window.addEventListener("online", () => send());
  setInterval(() => {
    if (queue.pending().length) send();
  }, 3000);
  onChange(() => {
    fillSelects();
    renderKind();
    renderStock();
    renderLedger();
    renderIncoming();
    renderQueue();
    renderMessage();
  });
  onEvent((event, old) => {
    if (old) return;
    if (event.type === "stock.changed" && event.data?.warehouse === k.depot) refresh();
    if (event.type.startsWith("transfer.") && event.data?.destination === k.depot) refresh();
  });
  renderQueue();
  try {
    k.items = await api.all("/items");
    k.itemBySku = Object.fromEntries(k.items.map((i) => [i.sku, i]));
    await loadDepots();
  } catch (err) {
    say("error", problemText(err, names));
  }
  fillSelects();
  renderKind();
  await openDepot(k.depots[0]?.code);
  send();
}

export function shown() {}

async function loadDepots() {
  let tops = k.me.warehouses;
  if (!tops.length) tops = (await api.all("/warehouses?level=prefecture")).map((w) => w.code);
  const found = [];
  for (const code of tops) {
    const top = await api.get(`/warehouses/${encodeURIComponent(code)}`);
    found.push(top);
    const children = await api.all(`/warehouses?parent=${encodeURIComponent(code)}`);
    for (const child of children) {
      found.push(child);
      if (child.level !== "village" && top.level !== "prefecture") {
        found.push(...await api.all(`/warehouses?parent=${encodeURIComponent(child.code)}`));
      }
    }
  }
  k.depots = found;
  k.byCode = Object.fromEntries(found.map((w) => [w.code, w]));
}

function fillSelects() {
  const indent = { prefecture: "", county: "", township: "\u3000", village: "\u3000\u3000" };
  const keep = $("k-depot").value || k.depot;
  $("k-depot").innerHTML = k.depots.map((w) =>
    `<option value="${esc(w.code)}">${indent[w.level] || ""}${esc(nameOf(w))} · ${esc(w.code)}</option>`).join("");
  if (keep) $("k-depot").value = keep;
  const item = $("k-item").value;
  $("k-item").innerHTML = k.items.map((i) =>
    `<option value="${esc(i.sku)}">${esc(nameOf(i))} (${esc(word("unit", i.unit))})</option>`).join("");
  if (item) $("k-item").value = item;
  $("k-dest-list").innerHTML = k.depots.filter((w) => w.code !== k.depot).map((w) =>
    `<option value="${esc(w.code)}">${esc(nameOf(w))}</option>`).join("");
}

function kind() {
  return document.querySelector("input[name=k-kind]:checked").value;
}

function renderKind() {
  const which = kind();
  const perishable = Boolean(k.itemBySku[$("k-item").value]?.perishable);
  $("k-lot-wrap").hidden = !(perishable && (which === "receipt" || which === "count"));
  $("k-dest-wrap").hidden = which !== "transfer";
  $("k-dest").required = which === "transfer";
  $("k-qty-label").textContent = t(which === "count" ? "counted" : "quantity");
  $("k-qty").min = which === "count" ? "0" : "1";
  $("k-submit").textContent = t(`do_${which}`);
}

async function openDepot(code) {
  if (!code) return;
  k.depot = code;
  $("k-depot").value = code;
  fillSelects();
  await refresh();
}

async function refresh() {
  const code = k.depot;
  try {
    const rows = await api.all(`/stock?warehouse=${encodeURIComponent(code)}`);
    if (code !== k.depot) return;
    k.rows = rows;
    renderStock();
    await Promise.all([loadLedger(), loadIncoming()]);
  } catch (err) {
    if (!(err instanceof api.Unreachable)) say("error", problemText(err, names));
  }
}

function renderStock() {
  const head = [t("item"), t("on_hand"), t("reserved"), t("available")];
  const body = k.rows.map((r) => {
    const low = r.available < r.min;
    const item = k.itemBySku[r.item];
    return `<tr data-item="${esc(r.item)}" class="${low ? "low" : ""}" tabindex="0">
      <th scope="row">${esc(nameOf(item) || r.item)}${low ? `<br><span class="flag">${esc(t("below_min_n", { n: number(r.min) }))}</span>` : ""}</th>
      <td>${number(r.on_hand)}</td><td>${number(r.reserved)}</td><td><strong>${number(r.available)}</strong></td></tr>`;
  }).join("");
  $("k-stock").innerHTML = `<thead><tr>${head.map((h) => `<th scope="col">${esc(h)}</th>`).join("")}</tr></thead>
    <tbody>${body || `<tr><td colspan="4" class="muted">${esc(t("no_stock"))}</td></tr>`}</tbody>`;
  for (const row of $("k-stock").querySelectorAll("tr[data-item]")) {
    const choose = () => {
      $("k-item").value = row.dataset.item;
      loadLedger().catch(() => {});
      $("k-qty").focus();
    };
    row.addEventListener("click", choose);
    row.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        choose();
      }
    });
  }
}

// Transfers on their way to this depot, received with one tap (all that was sent).
async function loadIncoming() {
  const code = k.depot;
  const list = await api.all(`/transfers?warehouse=${encodeURIComponent(code)}&status=in_transit`);
  if (code !== k.depot) return;
  k.incoming = list.filter((x) => x.destination === code);
  renderIncoming();
}

function renderIncoming() {
  const waiting = new Set(queue.pending().filter((a) => a.kind === "receive_transfer")
    .map((a) => a.transfer));
  const wh = (code) => nameOf(k.byCode[code]) || code;
  const item = (sku) => nameOf(k.itemBySku[sku]) || sku;
  $("k-incoming").innerHTML = k.incoming.length ? k.incoming.map((x) => `<li data-transfer="${x.id}">
      <span><strong>${esc(t("transfer_n", { id: x.id }))}</strong> ${esc(wh(x.source))} →<br>
      ${x.lines.map((l) => `${esc(item(l.item))} × ${number(l.quantity)}`).join(current() === "zh" ? "，" : ", ")}</span>
      <button type="button" class="primary" data-receive="${x.id}" ${waiting.has(x.id) ? "disabled" : ""}>${esc(t("receive"))}</button></li>`).join("")
    : `<li class="muted">${esc(t("no_incoming"))}</li>`;
  for (const b of $("k-incoming").querySelectorAll("[data-receive]")) {
    b.addEventListener("click", () => receiveTransfer(Number(b.dataset.receive)));
  }
}

function receiveTransfer(id) {
  const transfer = k.incoming.find((x) => x.id === id);
  queue.add({ key: api.newKey(), kind: "receive_transfer", transfer: id, method: "POST",
    path: `/transfers/${id}/receive`, body: { lines: [] }, at: new Date().toISOString(),
    summary: transfer ? { source: transfer.source, destination: transfer.destination,
      lines: transfer.lines.map((l) => ({ item: l.item, quantity: l.quantity })) } : null });
  renderQueue();
  renderIncoming();
  send();
}

async function loadLedger() {
  const item = $("k-item").value;
  if (!k.depot || !item) return;
  const lines = await api.all(`/movements?warehouse=${encodeURIComponent(k.depot)}&item=${encodeURIComponent(item)}`);
  k.ledger = lines.slice(-8).reverse();
  k.ledgerItem = item;
  renderLedger();
}

function renderLedger() {
  const item = nameOf(k.itemBySku[k.ledgerItem]) || k.ledgerItem || "";
  $("k-ledger").innerHTML = `<p class="muted">${esc(item)} · ${esc(nameOf(k.byCode[k.depot]) || k.depot || "")}</p>
    <ol class="ledger" id="k-ledger-lines">${k.ledger.map((m) => `<li>
      <span class="qty ${m.quantity < 0 ? "neg" : "pos"}">${m.quantity > 0 ? "+" : ""}${number(m.quantity)}</span>
      ${esc(word("kind", m.kind))} → ${number(m.balance_after)}
      <small>${esc((m.at || m.created_at || "").slice(0, 16).replace("T", " "))} ${esc(m.actor || "")}${m.reason ? ` · ${esc(m.reason)}` : ""}</small></li>`).join("")}</ol>`;
}

function describe(action) {
  const b = action.body;
  const wh = (code) => nameOf(k.byCode[code]) || code;
  const item = (sku) => nameOf(k.itemBySku[sku]) || sku;
  if (action.kind === "transfer") {
    return `${t("kind_transfer")} ${item(b.lines[0].item)} × ${number(b.lines[0].quantity)} ${wh(b.source)} → ${wh(b.destination)}`;
  }
  if (action.kind === "receive_transfer") {
    const x = action.summary;
    return `${t("kind_receive_transfer")} #${action.transfer}${x ? ` ${wh(x.source)} → ${wh(x.destination)}` : ""}`;
  }
  if (action.kind === "count") {
    return `${t("kind_count")} ${item(b.counts[0].item)} = ${number(b.counts[0].counted)} @ ${wh(b.warehouse)}`;
  }
  return `${t(`kind_${b.kind}`)} ${item(b.item)} × ${number(b.quantity)} @ ${wh(b.warehouse)}`;
}

function submit() {
  const which = kind();
  const item = $("k-item").value;
  const quantity = parseInt($("k-qty").value, 10);
  const reason = $("k-reason").value.trim();
  if (!k.depot || !item || !(quantity >= (which === "count" ? 0 : 1))) {
    say("error", t("need_quantity"));
    return;
  }
  let path = "/movements";
  let body;
  if (which === "receipt" || which === "issue") {
    body = { warehouse: k.depot, item, kind: which, quantity };
  } else if (which === "transfer") {
    const destination = $("k-dest").value.trim();
    if (!destination) {
      say("error", t("need_destination"));
      return;
    }
    path = "/transfers";
    body = { source: k.depot, destination, lines: [{ item, quantity }] };
  } else {
    path = "/stocktakes";
    body = { warehouse: k.depot, counts: [{ item, counted: quantity }] };
  }
  if (reason) body.reason = reason;
  if (!$("k-lot-wrap").hidden) {
    const lot = $("k-lot").value.trim();
    const expires = $("k-expires").value;
    const target = which === "count" ? body.counts[0] : body;
    if (lot) target.lot = lot;
    if (expires) target.expires_on = expires;
  }
  // The key is made here, once: every later attempt to send this action reuses it.
  queue.add({ key: api.newKey(), kind: which, method: "POST", path, body, at: new Date().toISOString() });
  $("k-qty").value = "";
  $("k-reason").value = "";
  $("k-lot").value = "";
  $("k-expires").value = "";
  renderQueue();
  send();
}

async function send() {
  const all = await queue.flush(sent, refused);
  renderQueue();
  document.body.dataset.outbox = queue.pending().length ? "waiting" : "empty";
  if (!all) say("queued", t("queued_offline"));
}

function sent(action, answer) {
  let text = `${t("done")}: ${describe(action)}`;
  if (answer && answer.available != null) text += ` · ${t("available")} ${number(answer.available)}`;
  say("ok", text);
  const b = action.body;
  if (b.warehouse === k.depot || b.source === k.depot || action.kind === "receive_transfer") {
    refresh();
  }
}

function refused(action, err) {
  say("error", `${describe(action)}: ${problemText(err, names)}`);
  if (action.kind === "receive_transfer") refresh();
}

function renderQueue() {
  const list = queue.pending();
  $("k-queue").hidden = !list.length;
  $("k-queue").innerHTML = list.length ? `<h2 class="h">${esc(t("queue_title", { n: list.length }))}</h2>
    <p>${esc(t("queue_help"))}</p>
    <ol id="k-queue-list">${list.map((a) => `<li>${esc(describe(a))}${a.tries ? ` <small>(${number(a.tries)}×)</small>` : ""}</li>`).join("")}</ol>
    <button type="button" id="k-send-now">${esc(t("send_now"))}</button>` : "";
  $("k-send-now")?.addEventListener("click", () => send());
}

function say(kindOf, text) {
  k.message = { kind: kindOf, text };
  renderMessage();
}

function renderMessage() {
  const box = $("k-message");
  box.className = `message ${k.message?.kind || ""}`;
  box.textContent = k.message?.text || "";
  box.hidden = !k.message;
}
