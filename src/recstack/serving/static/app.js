// The recstack web page: pick a user (or build a new user's history), see their history
// next to the lists of one or two variants with explanations, and send the impressions,
// clicks and conversions of those lists to POST /events, so the A/B report reflects use.
// Plain ES module, no dependencies; every element is built with the DOM API (no HTML from
// data), so titles and explanations cannot inject markup.

const K = 10;
const RERANK = "mmr:0.5";
const HISTORY_SHOWN = 50;
const SEARCH_DELAY_MS = 150;

const $ = (selector) => document.querySelector(selector);

const state = {
  variants: [], // GET /variants: [{name, traffic, model, titles, genres, ...}]
  mode: "user", // "user": a user ID; "new": a history built on this page
  userId: null,
  newHistory: [], // [{item, title, genres}], oldest first
  visitor: visitorId(), // who a new user's lists and events are for
  rerank: false,
  compare: "auto", // the second column's variant ("auto": another than the first)
  lists: [], // per column: {request_id, variant, user_id, fallback, items}
};

// ------------------------------------------------------------------------------ helpers
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** 32 hex digits from the platform's CSPRNG (randomUUID needs a secure context). */
function randomHex() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function visitorId() {
  try {
    let id = sessionStorage.getItem("recstack-visitor");
    if (!id) {
      id = `web-${randomHex().slice(0, 12)}`;
      sessionStorage.setItem("recstack-visitor", id);
    }
    return id;
  } catch {
    return `web-${randomHex().slice(0, 12)}`; // storage disabled: one ID per page load
  }
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    // an empty or non-JSON body: the status says enough
  }
  if (!response.ok) {
    const detail = data && (data.message || (typeof data.detail === "string" && data.detail));
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return data;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) search.append(key, String(v));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
const count = (n) => n.toLocaleString("en-US");
const plural = (n, word) =>
  `${count(n)} ${word}${n === 1 ? "" : /(s|x|ch|sh)$/.test(word) ? "es" : "s"}`;
const nameOf = (info) => info.title || info.item;

function notify(text) {
  $("#notice").textContent = text;
}

function showError(error) {
  const box = $("#error");
  box.textContent = error ? `Something went wrong: ${error.message || error}` : "";
  box.hidden = !error;
}

/** Titles and genres of item IDs (one GET /items), as a Map by ID. */
async function describe(ids) {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return new Map();
  const data = await api(`/items${query({ id: unique })}`);
  return new Map(data.items.map((info) => [info.item, info]));
}

function genreChips(genres) {
  if (!genres || genres.length === 0) return null;
  return el(
    "ul",
    { class: "chips", "aria-label": "Genres" },
    genres.map((g) => el("li", { class: "chip" }, g)),
  );
}

function emptyState(list, text) {
  list.replaceChildren(el("li", { class: "empty" }, text));
}

// ------------------------------------------------------------------------------ columns
function buildColumns() {
  const shown = Math.min(2, state.variants.length);
  const columns = $("#columns");
  columns.querySelectorAll(".rec-column").forEach((c) => c.remove());
  for (let c = 0; c < shown; c += 1) {
    columns.append(
      el(
        "section",
        { class: "column rec-column", "aria-labelledby": `rec-title-${c}`, "data-column": c },
        el(
          "header",
          { class: "column-head" },
          el("h2", { id: `rec-title-${c}`, class: "column-title" }, "Recommendations"),
          el("p", { id: `rec-meta-${c}`, class: "column-meta" }),
        ),
        el("ol", {
          id: `rec-list-${c}`,
          class: "cards",
          "aria-labelledby": `rec-title-${c}`,
          "aria-live": "polite",
          "aria-busy": "false",
          "data-testid": "rec-list",
        }),
      ),
    );
    emptyState($(`#rec-list-${c}`), "Pick a user or add titles to see recommendations.");
  }
  columns.dataset.columns = String(1 + shown);

  const select = $("#compare-select");
  $("#compare-field").hidden = state.variants.length < 2;
  select.replaceChildren(
    el("option", { value: "auto" }, "Auto: another variant"),
    state.variants.map((v) => el("option", { value: v.name }, `${v.name} (${v.model})`)),
  );
  select.value = state.compare;
}

function secondVariant(first) {
  if (state.compare !== "auto") return state.compare;
  const other = state.variants.find((v) => v.name !== first);
  return other ? other.name : first;
}

function fetchList(variant) {
  const rerank = state.rerank ? RERANK : null;
  if (state.mode === "user") {
    const params = { k: K, explain: true, rerank, variant };
    return api(`/recommend/${encodeURIComponent(state.userId)}${query(params)}`);
  }
  return api("/recommend", {
    method: "POST",
    body: {
      history: state.newHistory.map((h) => h.item),
      k: K,
      explain: true,
      rerank,
      user_id: state.visitor,
      variant,
    },
  });
}

function hasSubject() {
  return state.mode === "new" || state.userId !== null;
}

function setBusy(busy) {
  document.querySelectorAll("[data-testid=rec-list]").forEach((list) => {
    list.setAttribute("aria-busy", String(busy));
  });
}

let listGeneration = 0;

/** Fetch and show every column's list (a newer call makes an older one's answer stale). */
async function refreshLists() {
  const generation = ++listGeneration;
  const columns = document.querySelectorAll(".rec-column").length;
  $("#refresh").disabled = !hasSubject();
  if (!hasSubject()) {
    state.lists = [];
    buildColumns(); // back to the empty columns
    return;
  }
  if (columns === 0) return;
  setBusy(true);
  try {
    const lists = [await fetchList(null)];
    if (columns > 1) lists.push(await fetchList(secondVariant(lists[0].variant)));
    const info = await describe(lists.flatMap((l) => l.items.map((x) => x.item)));
    if (generation !== listGeneration) return;
    state.lists = lists;
    lists.forEach((list, c) => renderList(c, list, info));
    showError(null);
    await sendImpressions(lists);
    refreshReport();
  } catch (error) {
    if (generation === listGeneration) showError(error);
  } finally {
    if (generation === listGeneration) setBusy(false);
  }
}

function renderList(c, list, info) {
  const variant = state.variants.find((v) => v.name === list.variant);
  $(`#rec-title-${c}`).textContent = `Variant ${list.variant}`;
  const meta = $(`#rec-meta-${c}`);
  const badges = [
    el("span", {}, variant ? variant.model : ""),
    el("span", { class: c === 0 ? "badge badge-accent" : "badge" }, c === 0 ? "assigned" : "chosen"),
    list.fallback ? el("span", { class: "badge badge-warn" }, "popularity fallback") : null,
    state.rerank ? el("span", { class: "badge badge-teal" }, "diversified") : null,
  ];
  meta.replaceChildren(...badges.filter(Boolean));
  const target = $(`#rec-list-${c}`);
  target.dataset.requestId = list.request_id;
  target.dataset.variant = list.variant;
  if (list.items.length === 0) {
    emptyState(target, "No items to recommend.");
    return;
  }
  target.replaceChildren(...list.items.map((rec) => recCard(c, rec, info.get(rec.item))));
}

function recCard(c, rec, info = { item: rec.item, title: null, genres: [] }) {
  const name = nameOf(info);
  const why = rec.explanation ? rec.explanation.text : "";
  return el(
    "li",
    { class: "card rec", "data-testid": "rec-item", "data-item": rec.item },
    el("span", { class: "rank", "aria-hidden": "true" }, String(rec.rank)),
    el(
      "div",
      { class: "card-body" },
      cardTitle(name, "Open similar items (records a click)", () =>
        onRecommendation(c, rec, info, "click"),
      ),
      genreChips(info.genres),
      why ? el("p", { class: "why", "data-testid": "rec-explanation" }, why) : null,
      el(
        "div",
        { class: "card-foot" },
        el("span", { class: "score" }, `score ${rec.score.toFixed(3)}`),
        el(
          "button",
          {
            type: "button",
            class: "btn btn-ghost btn-small convert",
            "aria-label": `Record a conversion for ${name}`,
            onclick: () => onRecommendation(c, rec, info, "conversion"),
          },
          "Convert",
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------------------ events
function eventFor(list, item, type) {
  return {
    event_id: randomHex(),
    user_id: list.user_id || state.visitor,
    item_id: item,
    type,
    timestamp: Date.now() / 1000,
    request_id: list.request_id,
  };
}

function sendImpressions(lists) {
  const events = lists.flatMap((list) =>
    list.items.map((rec) => eventFor(list, rec.item, "impression")),
  );
  return events.length ? api("/events", { method: "POST", body: { events } }) : null;
}

async function onRecommendation(c, rec, info, type) {
  const list = state.lists[c];
  if (!list) return;
  if (type === "click") showSimilar(rec.item, list.variant, info);
  try {
    await api("/events", { method: "POST", body: { events: [eventFor(list, rec.item, type)] } });
    const what = type === "click" ? "Click" : "Conversion";
    notify(`${what} on “${nameOf(info)}” recorded for variant ${list.variant}.`);
    markCard(c, rec.item, type === "click" ? "clicked" : "converted");
    refreshReport();
    if (state.mode === "user") refreshHistory(); // clicks extend the history at once
  } catch (error) {
    showError(error);
  }
}

/** A badge on a recommendation once its click or conversion is stored (once per kind). */
function markCard(c, item, label) {
  const card = [...document.querySelectorAll(`#rec-list-${c} [data-testid=rec-item]`)].find(
    (node) => node.dataset.item === item,
  );
  const foot = card && card.querySelector(".card-foot");
  if (!foot || foot.querySelector(`[data-mark=${label}]`)) return;
  foot.insertBefore(el("span", { class: "badge badge-teal", "data-mark": label }, label), foot.lastChild);
}

// ------------------------------------------------------------------------------ history
async function refreshHistory() {
  const list = $("#history");
  const meta = $("#history-meta");
  if (state.mode === "new") {
    renderNewHistory();
    return;
  }
  if (state.userId === null) {
    meta.textContent = "";
    emptyState(list, "No user chosen yet.");
    return;
  }
  list.setAttribute("aria-busy", "true");
  try {
    const data = await api(
      `/users/${encodeURIComponent(state.userId)}/history${query({ limit: HISTORY_SHOWN })}`,
    );
    if (state.mode !== "user" || data.user_id !== state.userId) return;
    meta.textContent = data.known
      ? `${plural(data.n_events, "event")} · latest first`
      : data.n_events
        ? `${plural(data.n_events, "live event")} · not in the training data`
        : "Not in the training data";
    if (data.items.length === 0) {
      emptyState(list, "No events: the lists are the popular items.");
      return;
    }
    list.replaceChildren(...data.items.map((h) => historyCard(h)));
  } catch (error) {
    showError(error);
  } finally {
    list.setAttribute("aria-busy", "false");
  }
}

/** A card's heading: the item's name as a button (`title` its tooltip). */
function cardTitle(name, title, onclick) {
  return el(
    "h3",
    { class: "card-title" },
    el("button", { type: "button", class: "item-button", title, onclick }, name),
  );
}

function historyCard(info, onRemove = null) {
  const name = nameOf(info);
  return el(
    "li",
    { class: "card compact", "data-testid": "history-item", "data-item": info.item },
    el(
      "div",
      { class: "card-body" },
      cardTitle(name, "Open similar items", () => showSimilar(info.item, null, info)),
      genreChips(info.genres),
    ),
    info.live ? el("span", { class: "badge badge-teal" }, "live") : null,
    onRemove
      ? el(
          "button",
          {
            type: "button",
            class: "btn btn-ghost btn-small",
            "aria-label": `Remove ${name} from the history`,
            onclick: onRemove,
          },
          "Remove",
        )
      : null,
  );
}

function renderNewHistory() {
  const list = $("#history");
  const n = state.newHistory.length;
  $("#history-meta").textContent = n ? `${plural(n, "item")} · latest first` : "";
  if (n === 0) {
    emptyState(list, "Empty: search titles and add them. Until then the lists are the popular items.");
    return;
  }
  list.replaceChildren(
    ...state.newHistory
      .map((info, i) => historyCard(info, () => removeFromHistory(i)))
      .reverse(),
  );
}

function addToHistory(info) {
  if (state.newHistory.some((h) => h.item === info.item)) return;
  state.newHistory.push({ item: info.item, title: info.title, genres: info.genres });
  notify(`Added “${nameOf(info)}” to the history.`);
  afterHistoryChange();
}

function removeFromHistory(index) {
  const [removed] = state.newHistory.splice(index, 1);
  notify(`Removed “${nameOf(removed)}” from the history.`);
  afterHistoryChange();
  $("#item-input").focus(); // the removed button is gone: keep the focus somewhere useful
}

function afterHistoryChange() {
  renderNewHistory();
  renderItemResults(lastItemResults);
  updateSimilarButtons();
  refreshLists();
}

// ------------------------------------------------------------------------------ similar
let similarGeneration = 0;

async function showSimilar(itemId, variant, info) {
  const generation = ++similarGeneration;
  const panel = $("#similar");
  const list = $("#similar-list");
  panel.hidden = false;
  $("#similar-title").textContent = `Similar to “${nameOf(info || { item: itemId })}”`;
  list.setAttribute("aria-busy", "true");
  try {
    const data = await api(`/similar/${encodeURIComponent(itemId)}${query({ k: K, variant })}`);
    const described = await describe(data.items.map((x) => x.item));
    if (generation !== similarGeneration) return;
    if (data.items.length === 0) {
      emptyState(list, "No similar items.");
    } else {
      list.replaceChildren(
        ...data.items.map((x) => similarCard(x, described.get(x.item), data.variant)),
      );
    }
    $("#similar-title").focus({ preventScroll: true });
    panel.scrollIntoView({ block: "nearest", behavior: "smooth" });
  } catch (error) {
    if (generation === similarGeneration) emptyState(list, `Unavailable: ${error.message}`);
  } finally {
    if (generation === similarGeneration) list.setAttribute("aria-busy", "false");
  }
}

function similarCard(entry, info = { item: entry.item, title: null, genres: [] }, variant) {
  const name = nameOf(info);
  const added = state.newHistory.some((h) => h.item === entry.item);
  return el(
    "li",
    { class: "card compact", "data-item": entry.item },
    el(
      "div",
      { class: "card-body" },
      cardTitle(name, "Open similar items", () => showSimilar(entry.item, variant, info)),
      genreChips(info.genres),
    ),
    el("span", { class: "score", title: "Similarity" }, entry.score.toFixed(3)),
    state.mode === "new"
      ? el(
          "button",
          {
            type: "button",
            class: "btn btn-ghost btn-small add-similar",
            "data-item": entry.item,
            disabled: added,
            "aria-label": `Add ${name} to the history`,
            onclick: () => addToHistory(info),
          },
          added ? "Added" : "Add",
        )
      : null,
  );
}

function updateSimilarButtons() {
  document.querySelectorAll("#similar-list .add-similar").forEach((button) => {
    const added = state.newHistory.some((h) => h.item === button.dataset.item);
    button.disabled = added;
    button.textContent = added ? "Added" : "Add";
  });
}

// ------------------------------------------------------------------------------ report
let reportGeneration = 0;

async function refreshReport() {
  const generation = ++reportGeneration;
  const box = $("#report");
  box.setAttribute("aria-busy", "true");
  try {
    const data = await api("/experiments/report");
    if (generation === reportGeneration) renderReport(data);
  } catch (error) {
    if (generation === reportGeneration) box.replaceChildren(el("p", { class: "hint" }, error.message));
  } finally {
    if (generation === reportGeneration) box.setAttribute("aria-busy", "false");
  }
}

function renderReport(data) {
  const box = $("#report");
  if (data.variants.length === 0) {
    box.replaceChildren(el("p", { class: "empty" }, "No list served yet."));
    return;
  }
  // one scale for every interval bar, so variants compare at a glance
  const top = Math.max(0.01, ...data.variants.flatMap((v) => [v.ctr_ci[1], v.conversion_ci[1]]));
  const blocks = data.variants.map((v) =>
    el(
      "article",
      { class: "report-variant", "data-testid": "report-variant", "data-variant": v.name },
      el("h3", { class: "report-name" }, `Variant ${v.name}`),
      el(
        "dl",
        { class: "report-counts" },
        stat("Impressions", v.impressions, "impressions"),
        stat("Clicks", v.clicks, "clicks"),
        stat("Conversions", v.conversions, "conversions"),
      ),
      rateRow("CTR", v.ctr, v.ctr_ci, top, "ctr"),
      rateRow("Conversion", v.conversion_rate, v.conversion_ci, top, "conversion_rate"),
    ),
  );
  const tests = data.comparisons.map((t) =>
    el(
      "li",
      {},
      `${t.metric === "ctr" ? "CTR" : "Conversion"}: ${t.b} − ${t.a} `,
      el("strong", {}, t.diff === null ? "–" : `${t.diff >= 0 ? "+" : ""}${(100 * t.diff).toFixed(1)} pts`),
      t.p_value === null ? "" : ` (p = ${t.p_value.toFixed(3)})`,
    ),
  );
  box.replaceChildren(
    ...blocks,
    tests.length
      ? el("div", { class: "report-tests" }, el("h3", {}, "Two-proportion tests"), el("ul", {}, tests))
      : "",
  );
}

function stat(label, value, field) {
  return el(
    "div",
    { class: "stat" },
    el("dt", {}, label),
    el("dd", { "data-field": field }, count(value)),
  );
}

function rateRow(label, value, ci, top, field) {
  const bar = el("span", { class: "ci-range" });
  bar.style.setProperty("left", `${(100 * ci[0]) / top}%`);
  bar.style.setProperty("width", `${Math.max(1, (100 * (ci[1] - ci[0])) / top)}%`);
  const dot = el("span", { class: "ci-point" });
  dot.hidden = value === null;
  if (value !== null) dot.style.setProperty("left", `${(100 * Math.min(value, 1)) / top}%`);
  return el(
    "div",
    { class: "rate" },
    el("span", { class: "rate-label" }, label),
    el("span", { class: "rate-value", "data-field": field }, percent(value)),
    el("span", { class: "rate-ci" }, `95% CI ${percent(ci[0])} – ${percent(ci[1])}`),
    el("span", { class: "ci-track", "aria-hidden": "true" }, bar, dot),
  );
}

// ------------------------------------------------------------------------------ choosing who
function setMode(mode, { focus = false } = {}) {
  state.mode = mode;
  for (const [tab, pane, name] of [
    ["#tab-user", "#pane-user", "user"],
    ["#tab-new", "#pane-new", "new"],
  ]) {
    const selected = name === mode;
    $(tab).setAttribute("aria-selected", String(selected));
    $(tab).tabIndex = selected ? 0 : -1;
    $(pane).hidden = !selected;
  }
  if (focus) $(mode === "user" ? "#tab-user" : "#tab-new").focus();
  if (mode === "new") searchItems($("#item-input").value); // empty: the popular titles
  updateSubject();
  refreshHistory();
  $("#similar").hidden = true;
  refreshLists();
}

function updateSubject() {
  const url = new URL(window.location.href);
  if (state.mode === "user" && state.userId !== null) {
    $("#subject").textContent = `User ${state.userId}`;
    url.searchParams.set("user", state.userId);
  } else if (state.mode === "new") {
    $("#subject").textContent = "New user";
    url.searchParams.delete("user");
  } else {
    $("#subject").textContent = "Pick a user or build a history";
    url.searchParams.delete("user");
  }
  window.history.replaceState(null, "", url);
}

function openUser(id) {
  const userId = id.trim();
  if (!userId) return;
  state.userId = userId;
  $("#user-input").value = userId;
  closeOptions();
  notify("");
  setMode("user");
}

// the user ID combobox (WAI-ARIA combobox pattern with a list box popup)
let activeOption = -1;

function options() {
  return [...document.querySelectorAll("#user-options [role=option]")];
}

function closeOptions() {
  $("#user-options").hidden = true;
  $("#user-input").setAttribute("aria-expanded", "false");
  $("#user-input").removeAttribute("aria-activedescendant");
  activeOption = -1;
}

function highlight(index) {
  const all = options();
  if (all.length === 0) return;
  activeOption = (index + all.length) % all.length;
  all.forEach((option, i) => option.setAttribute("aria-selected", String(i === activeOption)));
  const active = all[activeOption];
  $("#user-input").setAttribute("aria-activedescendant", active.id);
  active.scrollIntoView({ block: "nearest" });
}

const searchUsers = debounce(async (text) => {
  try {
    const data = await api(`/users${query({ q: text, limit: 8 })}`);
    if ($("#user-input").value !== text || document.activeElement !== $("#user-input")) return;
    const box = $("#user-options");
    if (data.users.length === 0) {
      closeOptions();
      return;
    }
    box.replaceChildren(
      ...data.users.map((u, i) =>
        el(
          "li",
          {
            id: `user-option-${i}`,
            role: "option",
            "aria-selected": "false",
            "data-user": u.user,
            onmousedown: (event) => event.preventDefault(), // keep the input's focus
            onclick: () => openUser(u.user),
          },
          el("span", { class: "option-id" }, u.user),
          el("span", { class: "option-meta" }, plural(u.n_events, "event")),
        ),
      ),
    );
    box.hidden = false;
    $("#user-input").setAttribute("aria-expanded", "true");
    activeOption = -1;
  } catch (error) {
    showError(error);
  }
}, SEARCH_DELAY_MS);

// the new user's title search
let lastItemResults = [];

const searchItems = debounce(async (text) => {
  try {
    const data = await api(`/items${query({ q: text, limit: 12 })}`);
    if ($("#item-input").value !== text) return;
    lastItemResults = data.items;
    renderItemResults(data.items);
    $("#item-status").textContent = data.items.length
      ? `${plural(data.items.length, "match")}${text ? "" : " (most popular)"}`
      : "No title matches.";
  } catch (error) {
    showError(error);
  }
}, SEARCH_DELAY_MS);

function renderItemResults(items) {
  $("#item-results").replaceChildren(
    ...items.map((info) => {
      const added = state.newHistory.some((h) => h.item === info.item);
      const name = nameOf(info);
      return el(
        "li",
        { class: "search-result", "data-testid": "item-result", "data-item": info.item },
        el(
          "div",
          { class: "search-text" },
          el("span", { class: "search-title" }, name),
          info.genres.length ? el("span", { class: "search-genres" }, info.genres.join(" · ")) : null,
        ),
        el(
          "button",
          {
            type: "button",
            class: "btn btn-secondary btn-small",
            disabled: added,
            "aria-label": added ? `${name} is in the history` : `Add ${name} to the history`,
            onclick: () => addToHistory(info),
          },
          added ? "Added" : "Add",
        ),
      );
    }),
  );
}

// ------------------------------------------------------------------------------ wiring
function wire() {
  const input = $("#user-input");
  input.addEventListener("input", () => searchUsers(input.value));
  input.addEventListener("focus", () => searchUsers(input.value));
  input.addEventListener("blur", () => setTimeout(closeOptions, 100));
  input.addEventListener("keydown", (event) => {
    const open = !$("#user-options").hidden;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (open) highlight(activeOption + (event.key === "ArrowDown" ? 1 : -1));
      else searchUsers(input.value);
    } else if (event.key === "Escape") {
      closeOptions();
    } else if (event.key === "Enter" && open && activeOption >= 0) {
      event.preventDefault();
      openUser(options()[activeOption].dataset.user);
    }
  });
  $("#user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    openUser(input.value);
  });

  const tabs = [$("#tab-user"), $("#tab-new")];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => setMode(i === 0 ? "user" : "new"));
    tab.addEventListener("keydown", (event) => {
      // arrow keys move between the tabs (roving tabindex)
      if (!["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
      event.preventDefault();
      const next = event.key === "Home" ? 0 : event.key === "End" ? 1 : 1 - i;
      setMode(next === 0 ? "user" : "new", { focus: true });
    });
  });

  const items = $("#item-input");
  items.addEventListener("input", () => searchItems(items.value));

  $("#rerank-toggle").addEventListener("change", (event) => {
    state.rerank = event.target.checked;
    refreshLists();
  });
  $("#compare-select").addEventListener("change", (event) => {
    state.compare = event.target.value;
    refreshLists();
  });
  $("#refresh").addEventListener("click", () => {
    refreshHistory();
    refreshLists();
  });
  $("#report-refresh").addEventListener("click", refreshReport);
  $("#similar-close").addEventListener("click", () => {
    $("#similar").hidden = true;
  });
}

async function start() {
  wire();
  try {
    const data = await api("/variants");
    state.variants = data.variants;
    $("#service").textContent = data.variants
      .map((v) => `${v.name}: ${v.model} · ${v.traffic.toFixed(0)}% · ${count(v.n_items)} items`)
      .join("  |  ");
  } catch (error) {
    $("#service").textContent = "The service did not answer.";
    showError(error);
    return;
  }
  buildColumns();
  refreshReport();
  const user = new URLSearchParams(window.location.search).get("user");
  if (user) openUser(user);
  else refreshHistory();
  document.body.dataset.ready = "true"; // for tests and tools: the page is wired
}

start();
