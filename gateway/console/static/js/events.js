// Live: the gateway's event log, polled every few seconds; listeners get each new event once.
import * as api from "./api.js";
import { t } from "./i18n.js";

const listeners = new Set();
const seen = [];
// Stock and catalogue changes come by the thousand (a seed, a restocking); the list keeps only
// the last few of them, so that a road closure or a plan is not pushed out of sight.
const BULK = /^(stock|catalog)\./;
const KEEP_BULK = 20;
const KEEP = 50;

function keep(event) {
  seen.push(event);
  if (BULK.test(event.type) && seen.filter((e) => BULK.test(e.type)).length > KEEP_BULK) {
    seen.splice(seen.findIndex((e) => BULK.test(e.type)), 1);
  }
  if (seen.length > KEEP) seen.shift();
}
let after = null;
let timer = null;

export function onEvent(fn) {
  listeners.add(fn);
  for (const event of seen) fn(event, true);
}

export function recent() {
  return seen.slice();
}

// The id of the log's last event, found by bisection (the log may hold many thousands: a seed
// alone writes one per balance), and the last few events for the list.
async function latest() {
  const beyond = async (id) => (await api.get(`/events?after=${id}&limit=1`)).items.length > 0;
  if (!(await beyond(0))) return 0;
  let lo = 0; // an event after lo exists
  let hi = 1024; // none after hi, once the loop is done
  while (await beyond(hi)) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await beyond(mid)) lo = mid;
    else hi = mid;
  }
  const page = await api.get(`/events?after=${Math.max(0, hi - 15)}&limit=15`);
  seen.splice(0, seen.length, ...page.items);
  return hi;
}

async function poll() {
  try {
    if (after === null) after = await latest();
    for (;;) {
      const page = await api.get(`/events?after=${after}&limit=200`);
      for (const event of page.items) {
        after = event.id;
        keep(event);
        for (const fn of listeners) {
          try {
            fn(event, false);
          } catch (err) {
            console.error(err);
          }
        }
      }
      if (!page.next_cursor) break;
    }
    live("on");
  } catch {
    live("off");
  }
  timer = setTimeout(poll, 2000);
}

function live(state) {
  document.body.dataset.live = state;
  const conn = document.getElementById("conn");
  if (conn) conn.textContent = t(state === "on" ? "live_on" : "live_off");
}

export function startEvents() {
  if (timer === null) timer = setTimeout(poll, 0);
}
