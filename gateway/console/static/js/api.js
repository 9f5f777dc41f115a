// The public API with the signed-in user's bearer token. The token lives in localStorage
// until sign-out; a sign-in link carries it in the URL fragment (/#token=...), which browsers
// never send to a server, and the console removes it from the address bar at once.
import { acceptLanguage } from "./i18n.js";

const TOKEN = "emsupply.token";

export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.retryAfter = retryAfter; // "try again": rate-limited, or the same key still at work
  }
}

// The request never got an answer from the services (no network, gateway or service down):
// safe to send again with the same Idempotency-Key.
export class Unreachable extends Error {}

export function takeTokenFromLink() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return false;
  localStorage.setItem(TOKEN, decodeURIComponent(match[1]).trim());
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

export function token() {
  return localStorage.getItem(TOKEN);
}

export function setToken(value) {
  localStorage.setItem(TOKEN, value.trim());
}

export function signOut() {
  localStorage.removeItem(TOKEN);
}

export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export async function call(method, path, body, { key } = {}) {
  const headers = {
    Authorization: `Bearer ${token()}`,
    Accept: "application/json, application/problem+json",
    "Accept-Language": acceptLanguage(),
  };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  let answer;
  try {
    answer = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit",
    });
  } catch (err) {
    throw new Unreachable(String(err));
  }
  const text = await answer.text().catch(() => "");
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (answer.ok) return data;
  if (answer.status === 502 || answer.status === 503 || answer.status === 504) {
    throw Object.assign(new Unreachable(data?.detail || `HTTP ${answer.status}`), { problem: data });
  }
  throw new ApiError(answer.status, data, answer.headers.get("Retry-After"));
}

export const get = (path) => call("GET", path);
export const post = (path, body, opts) => call("POST", path, body, opts);

// Every page of a list (limit 1000 a page).
export async function all(path) {
  const rows = [];
  let cursor = null;
  const sep = path.includes("?") ? "&" : "?";
  do {
    const page = await get(`${path}${sep}limit=1000${cursor ? `&cursor=${cursor}` : ""}`);
    rows.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return rows;
}
