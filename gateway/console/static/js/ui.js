// Small helpers the views share: escaping, tables, times, and a problem in words.
import { ApiError, Unreachable } from "./api.js";
import { current, has, number, t } from "./i18n.js";

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function el(html) {
  const box = document.createElement("template");
  box.innerHTML = html.trim();
  return box.content.firstElementChild;
}

// Cells are HTML already escaped by the caller.
export function table(head, rows, id = "") {
  return `<div class="table-wrap"><table${id ? ` id="${id}"` : ""}><thead><tr>${head.map((h) => `<th scope="col">${esc(h)}</th>`).join("")}</tr></thead>
    <tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")}</tbody></table></div>`;
}

export function duration(minutes) {
  const m = Math.round(minutes);
  const h = Math.floor(m / 60);
  if (current() === "zh") return h ? `${h} 小时 ${m % 60} 分` : `${m} 分钟`;
  return h ? `${h} h ${m % 60} min` : `${m} min`;
}

export function clock(ms, seconds = false) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? `:${pad(d.getSeconds())}` : ""}`;
}

// What went wrong, in words, in the chosen language. The services' problem+json carries a type
// and, for the ones a keeper meets, the figures (an issue over the available stock: how much is
// available); the console words those itself from its catalogue, naming depots and items with
// `names` ({ warehouse(code), item(sku) }), and falls back to the server's detail.
export function problemText(err, names = {}) {
  if (err instanceof ApiError) {
    const p = err.problem || {};
    const slug = String(p.type || "").split("/").pop();
    const wh = (code) => (names.warehouse ? names.warehouse(code) : code) || code;
    const item = (sku) => (names.item ? names.item(sku) : sku) || sku;
    const vars = { ...p, warehouse: wh(p.warehouse), item: item(p.item), status: err.status };
    for (const key of ["available", "requested"]) {
      if (typeof p[key] === "number") vars[key] = number(p[key]);
    }
    const serverSpeaks = current() === "en" || /[\u4e00-\u9fff]/.test(p.detail || "");
    let text;
    if (has(`problem_${slug}`) && (!serverSpeaks || slug === "insufficient-stock")) {
      text = t(`problem_${slug}`, vars);
      if ((slug === "conflict" || slug === "not-found") && p.detail) text += `（${p.detail}）`;
    } else {
      text = p.detail || p.title || `HTTP ${err.status}`;
    }
    const fields = p.errors ? Object.entries(p.errors) : [];
    if (fields.length && !text.includes(String(fields[0][1]))) {
      text += ` (${fields[0][0]}: ${[].concat(fields[0][1]).join(", ")})`;
    }
    return text;
  }
  if (err instanceof Unreachable) return t("offline");
  return err?.message || String(err);
}
