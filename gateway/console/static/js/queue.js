// Actions a keeper submitted, kept on the phone (localStorage) until the server has answered
// them. Each carries the Idempotency-Key made when its form was submitted, so sending it again
// after a lost connection never counts twice: the server answers the first response again.
import * as api from "./api.js";

const KEY = "emsupply.outbox";

export function pending() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || "[]");
  } catch {
    return [];
  }
}

function save(list) {
  localStorage.setItem(KEY, JSON.stringify(list));
}

export function add(action) {
  save([...pending(), action]);
}

function remove(key) {
  save(pending().filter((a) => a.key !== key));
}

function mark(key, changes) {
  save(pending().map((a) => (a.key === key ? { ...a, ...changes } : a)));
}

let running = null;

// Send what waits, oldest first. `done(action, answer)` for each that the server took,
// `failed(action, error)` for each it refused (taken off the queue: sending it again would be
// refused again). Stops at the first that could not be delivered; it stays queued. One pass at
// a time: a call during a pass gets that pass's promise.
export function flush(done, failed) {
  if (!running) {
    running = drain(done, failed).finally(() => {
      running = null;
    });
  }
  return running;
}

async function drain(done, failed) {
  for (const action of pending()) {
    try {
      const answer = await api.call(action.method, action.path, action.body, { key: action.key });
      remove(action.key);
      done(action, answer);
    } catch (err) {
      const again = err instanceof api.Unreachable ||
        (err instanceof api.ApiError && (err.status === 429 || (err.status === 409 && err.retryAfter)));
      if (again) {
        mark(action.key, { tries: (action.tries || 0) + 1, last_error: err.message });
        return false;
      }
      remove(action.key);
      failed(action, err);
    }
  }
  return true;
}
