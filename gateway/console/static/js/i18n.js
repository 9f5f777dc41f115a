// One catalogue per language (/console/i18n/zh.json, en.json); Chinese unless the user chose
// English. Elements carry data-i18n (text), data-i18n-ph (placeholder), data-i18n-label
// (aria-label) and are filled again whenever the language changes.
const KEY = "emsupply.lang";
const catalogues = {};
let lang = localStorage.getItem(KEY) === "en" ? "en" : "zh";
const listeners = [];

export async function load() {
  for (const code of ["zh", "en"]) {
    const answer = await fetch(`/console/i18n/${code}.json`, { cache: "no-cache" });
    catalogues[code] = await answer.json();
  }
  apply(document);
}

export function current() {
  return lang;
}

export function acceptLanguage() {
  return lang === "zh" ? "zh-CN,zh;q=0.9" : "en";
}

export function setLang(code) {
  lang = code === "en" ? "en" : "zh";
  localStorage.setItem(KEY, lang);
  apply(document);
  for (const fn of listeners) fn(lang);
}

export function onChange(fn) {
  listeners.push(fn);
}

export function t(key, vars = {}) {
  const text = catalogues[lang]?.[key] ?? catalogues.zh?.[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export function has(key) {
  return key in (catalogues[lang] || {});
}

// A word of the API's vocabulary (a road class, a status, an event type ...): "prefix.value".
export function word(prefix, value) {
  const key = `${prefix}_${value}`;
  return catalogues[lang]?.[key] ?? value;
}

// A warehouse's or item's name in the chosen language.
export function nameOf(thing) {
  if (!thing) return "";
  return (lang === "zh" ? thing.name_zh || thing.name : thing.name || thing.name_zh) || "";
}

export function number(n) {
  return new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en-GB").format(n);
}

export function apply(root) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("app_title");
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-ph]")) el.placeholder = t(el.dataset.i18nPh);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
}
