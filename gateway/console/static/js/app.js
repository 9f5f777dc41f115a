// The console's start: sign-in (a pasted token or a /#token= link), who is signed in, the
// language switch, and the view for the role: commanders get the map, keepers their depots.
import * as api from "./api.js";
import * as i18n from "./i18n.js";
import { startEvents } from "./events.js";

const $ = (id) => document.getElementById(id);
const state = { me: null, view: null, views: {} };
window.emsupplyConsole = state; // for the browser tests and for curious commanders

async function boot() {
  api.takeTokenFromLink();
  await i18n.load();
  renderLangButton();
  $("lang").addEventListener("click", () => {
    i18n.setLang(i18n.current() === "zh" ? "en" : "zh");
    renderLangButton();
    renderWho();
  });
  $("signout").addEventListener("click", () => {
    api.signOut();
    location.reload();
  });
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    api.setToken($("token-input").value);
    $("token-input").value = "";
    await start();
  });
  for (const button of document.querySelectorAll("#views button")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  await start();
}

function renderLangButton() {
  const zh = i18n.current() === "zh";
  $("lang").textContent = zh ? "English" : "中文";
  $("lang").lang = zh ? "en" : "zh-CN";
}

async function start() {
  if (!api.token()) return signIn();
  try {
    state.me = await api.get("/whoami");
  } catch (err) {
    if (err instanceof api.ApiError && err.status === 401) {
      api.signOut();
      return signIn(i18n.t("token_rejected"));
    }
    // Unreachable (a keeper on a bad connection): keep the token, try again shortly.
    signIn(err instanceof api.ApiError ? err.message : i18n.t("offline"));
    setTimeout(start, 5000);
    return;
  }
  $("signin").hidden = true;
  $("signout").hidden = false;
  // An admin may use both views; a keeper has only the depot view, the others the map.
  $("views").hidden = state.me.role !== "admin";
  renderWho();
  startEvents();
  show(state.me.role === "keeper" ? "keeper" : "command");
}

function signIn(message = "") {
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("token-input").focus();
}

function renderWho() {
  const me = state.me;
  if (!me) return;
  $("who").hidden = false;
  $("who-name").textContent = me.name;
  $("who-role").textContent = i18n.word("role", me.role);
  $("who-depots").textContent = `${i18n.t("depots")}: ${me.warehouses.length
    ? me.warehouses.join(", ") : i18n.t("all_depots")}`;
  $("conn").textContent = i18n.t(document.body.dataset.live === "off" ? "live_off" : "live_on");
}

async function show(view) {
  state.view = view;
  for (const name of ["command", "keeper"]) {
    $(name).hidden = name !== view;
    $(`tab-${name}`).setAttribute("aria-current", name === view ? "page" : "false");
  }
  document.body.dataset.view = view;
  if (!state.views[view]) {
    const module = view === "command" ? await import("./command.js") : await import("./keeper.js");
    state.views[view] = module;
    await module.init(state);
  } else {
    state.views[view].shown?.();
  }
}

boot();
