// The preview page: follows the server's builds over SSE and swaps frames without losing scroll.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const VIEWS = ["email", "dark", "text", "headers"];
const page = {
  version: 0, // the build the page shows
  latest: 0, // the newest build the server announced
  view: VIEWS.includes(params.get("view")) ? params.get("view") : "email",
  as: params.get("as") || "sample",
  request: 0,
  data: null,
  search: "", // what the "Find a subscriber" box holds: the picker shows its matches
};

// A frame that loads the next version behind the current one and swaps when it is ready,
// carrying the scroll position over: no flash, no jump back to the top.
class Frame {
  constructor(host) {
    this.host = host;
    this.scheme = host.dataset.scheme;
    this.url = null;
    this.loading = null;
    this.frames = [this.make(), this.make()];
    this.frames[0].classList.add("current");
  }
  make() {
    const f = document.createElement("iframe");
    f.setAttribute("sandbox", "allow-same-origin allow-popups allow-popups-to-escape-sandbox");
    f.setAttribute("title", `Email, ${this.host.id.replace("-", " ")}`);
    this.host.appendChild(f);
    return f;
  }
  visible() {
    return !this.host.closest(".view").hidden;
  }
  show(url, version) {
    this.wanted = { url, version };
    if (this.visible()) this.load();
  }
  load() {
    const want = this.wanted;
    if (!want || want.url === this.url || (this.loading && this.loading.url === want.url)) return;
    const [front, back] = this.frames;
    this.loading = want;
    back.onload = () => {
      if (this.loading !== want) return; // a newer version superseded this one
      try {
        const y = front.contentWindow ? front.contentWindow.scrollY : 0;
        if (y) back.contentWindow.scrollTo(0, y);
      } catch (e) {
        /* a frame we cannot script: keep the top */
      }
      back.dataset.version = want.version;
      back.classList.add("current");
      front.classList.remove("current");
      this.frames = [back, front];
      this.url = want.url;
      this.loading = null;
    };
    back.src = want.url;
  }
}

const frames = Array.from(document.querySelectorAll(".frame")).map((el) => new Frame(el));

function setView(view, push) {
  page.view = view;
  for (const v of VIEWS) {
    $(`view-${v}`).hidden = v !== view;
    $(`tab-${v}`).setAttribute("aria-selected", String(v === view));
  }
  frames.forEach((f) => f.visible() && f.load());
  if (push) {
    const url = new URL(location.href);
    url.searchParams.set("view", view);
    history.replaceState(null, "", url);
  }
}

function text(selector, value) {
  document.querySelectorAll(selector).forEach((el) => (el.textContent = value));
}

function kb(bytes) {
  return `${(bytes / 1024).toFixed(1)} KB`;
}

function renderChecks(checks) {
  const list = $("checks-list");
  list.replaceChildren();
  const { errors, warnings } = checks;
  const parts = [];
  if (errors) parts.push(`${errors} error${errors === 1 ? "" : "s"}`);
  if (warnings) parts.push(`${warnings} warning${warnings === 1 ? "" : "s"}`);
  $("checks-summary").textContent = parts.length ? parts.join(", ") : "Check passed: no errors, no warnings";
  const box = $("checks");
  box.dataset.level = errors ? "error" : warnings ? "warning" : "ok";
  if (!box.dataset.touched) box.open = errors > 0;
  for (const d of checks.items) {
    const li = document.createElement("li");
    li.className = `diag ${d.severity}`;
    const sev = Object.assign(document.createElement("span"), { className: "sev", textContent: d.severity });
    const where = Object.assign(document.createElement("span"), {
      className: "where",
      textContent: `line ${d.line}${d.col ? ":" + d.col : ""}`,
      title: d.location,
    });
    li.append(sev, where);
    if (d.field) li.append(Object.assign(document.createElement("code"), { textContent: d.field }));
    li.append(Object.assign(document.createElement("span"), { className: "msg", textContent: d.message }));
    list.append(li);
  }
}

function renderProblems(problems) {
  const box = $("problem");
  box.hidden = problems.length === 0;
  document.querySelector("main").classList.toggle("stale", problems.length > 0);
  const list = $("problem-list");
  list.replaceChildren();
  const kinds = { config: "newsletter.yaml", issue: "Issue file", template: "Template", internal: "Internal error" };
  for (const p of problems) {
    const card = document.createElement("article");
    card.className = "problem-item";
    const head = document.createElement("div");
    head.className = "problem-where";
    head.append(
      Object.assign(document.createElement("span"), { className: "kind", textContent: kinds[p.kind] || p.kind }),
      Object.assign(document.createElement("code"), { textContent: p.location || "" }),
    );
    if (p.field) head.append(Object.assign(document.createElement("span"), { className: "field", textContent: p.field }));
    card.append(head, Object.assign(document.createElement("p"), { className: "problem-msg", textContent: p.message }));
    if (p.excerpt.length) {
      const pre = document.createElement("pre");
      pre.className = "excerpt";
      for (const line of p.excerpt) {
        const row = document.createElement("span");
        row.className = line.marked ? "row marked" : "row";
        row.append(
          Object.assign(document.createElement("span"), { className: "ln", textContent: String(line.number) }),
          document.createTextNode(line.text + "\n"),
        );
        pre.append(row);
        if (line.marked && p.col) {
          const caret = document.createElement("span");
          caret.className = "row caret";
          caret.append(
            Object.assign(document.createElement("span"), { className: "ln", textContent: "" }),
            document.createTextNode(" ".repeat(Math.max(0, p.col - 1)) + "^\n"),
          );
          pre.append(caret);
        }
      }
      card.append(pre);
    }
    if (p.details) {
      const more = document.createElement("details");
      more.append(Object.assign(document.createElement("summary"), { textContent: "Traceback" }));
      more.append(Object.assign(document.createElement("pre"), { textContent: p.details }));
      card.append(more);
    }
    list.append(card);
  }
}

function renderEmail(email, version) {
  text("[data-subject]", email.subject);
  text("[data-preheader]", email.preheader ? `— ${email.preheader}` : "");
  text("[data-from]", email.from);
  text("[data-from-name]", email.from_name);
  text("[data-to]", email.to);
  text("[data-date]", email.date);
  text("[data-initial]", (email.from_name || "?").trim().charAt(0).toUpperCase());
  $("preheader").textContent = email.preheader
    ? `${email.preheader} (${email.preheader.length} characters)`
    : "None: inboxes will show the first words of the email instead.";
  $("preheader").classList.toggle("missing", !email.preheader);
  $("text").textContent = email.text;
  const longest = Math.max(0, ...email.text.split("\n").map((l) => l.length));
  $("text-stats").textContent = `${email.text.length.toLocaleString()} characters · longest line ${longest}`;
  const rows = $("headers");
  rows.replaceChildren();
  for (const [name, value] of email.headers) {
    const tr = document.createElement("tr");
    tr.append(
      Object.assign(document.createElement("th"), { textContent: name }),
      Object.assign(document.createElement("td"), { textContent: value }),
    );
    rows.append(tr);
  }
  const ratio = email.html_bytes / email.clip_bytes;
  const fill = $("meter-fill");
  fill.style.width = `${Math.min(100, ratio * 100).toFixed(1)}%`;
  $("meter").dataset.level = email.html_bytes > email.clip_bytes ? "error" : email.html_bytes > email.warn_bytes ? "warning" : "ok";
  $("meter").style.setProperty("--warn", `${((email.warn_bytes / email.clip_bytes) * 100).toFixed(1)}%`);
  $("meter-text").textContent = `${kb(email.html_bytes)} (${Math.round(ratio * 100)}% of the limit)`;
  showFrames(version);
}

function showFrames(version) {
  const q = `as=${encodeURIComponent(page.as)}&v=${version}`;
  for (const f of frames) f.show(`/email?${q}&scheme=${f.scheme}`, version);
}

function renderRecipients(recipients, current) {
  const select = $("as");
  const signature = JSON.stringify([recipients, current]);
  if (select.dataset.signature === signature) return; // keep an open picker open
  select.dataset.signature = signature;
  const options = recipients.map((r) => {
    const o = document.createElement("option");
    o.value = r.key;
    o.textContent = r.label;
    return o;
  });
  if (!recipients.some((r) => r.key === current.key)) {
    options.push(Object.assign(document.createElement("option"), { value: current.key, textContent: current.label }));
  }
  select.replaceChildren(...options);
  select.value = current.key;
}

async function refresh() {
  const request = ++page.request;
  const response = await fetch(`/api/state?as=${encodeURIComponent(page.as)}`, { cache: "no-store" });
  const data = await response.json();
  if (request !== page.request) return; // a newer refresh is on its way
  page.data = data;
  document.title = `${data.issue.title} · preview`;
  $("newsletter-name").textContent = data.issue.newsletter;
  renderChecks(data.checks);
  renderProblems(data.problems);
  if (!page.search) renderRecipients(data.recipients, data.recipient);
  if (data.email) renderEmail(data.email, data.version);
  else for (const f of frames) if (!f.url && !f.wanted) f.show(`/email?scheme=${f.scheme}`, 0);
  const when = new Date(data.built_at * 1000).toLocaleTimeString();
  $("status").textContent = data.ok
    ? `Built in ${Math.round(data.duration_ms)} ms · ${when}`
    : `Build failed · ${when}`;
  page.version = data.version;
  document.body.dataset.version = String(data.version);
  document.body.dataset.state = data.ok ? "ok" : "error";
}

function refreshSoon() {
  refresh().catch(() => {
    $("status").textContent = "Server unreachable: retrying…";
  });
}

function connect() {
  const live = $("live");
  const events = new EventSource("/events");
  events.addEventListener("open", () => {
    live.className = "live on";
    live.title = "Live reload: connected";
  });
  events.addEventListener("build", (e) => {
    const build = JSON.parse(e.data);
    page.latest = build.version;
    if (build.version === page.version) return;
    // The frames need nothing from the state: start loading them right away, in parallel.
    if (build.ok && page.data) showFrames(build.version);
    refreshSoon();
  });
  events.addEventListener("error", () => {
    live.className = "live off";
    live.title = "Live reload: server unreachable, reconnecting…";
  });
}

for (const v of VIEWS) $(`tab-${v}`).addEventListener("click", () => setView(v, true));
document.addEventListener("keydown", (e) => {
  if (e.target.closest("select, input, textarea") || e.metaKey || e.ctrlKey || e.altKey) return;
  const i = ["1", "2", "3", "4"].indexOf(e.key);
  if (i >= 0) setView(VIEWS[i], true);
});
// Once the user opens or closes the panel, builds stop opening it for them.
document.querySelector("#checks summary").addEventListener("click", () => ($("checks").dataset.touched = "1"));
// Subscribers added since the last build show up as soon as the picker is used; with a search,
// the picker holds the matches from the whole list (the server searches the database).
async function loadRecipients() {
  const query = page.search;
  try {
    const response = await fetch(`/api/recipients?q=${encodeURIComponent(query)}`, { cache: "no-store" });
    const recipients = await response.json();
    if (query !== page.search || !page.data) return; // a newer search is on its way
    renderRecipients(recipients, page.data.recipient);
    $("as").dataset.matches = String(recipients.length - 1);
  } catch (e) {
    /* the server is gone: the picker keeps what it has */
  }
}
$("as").addEventListener("focus", loadRecipients);
let searchTimer = 0;
$("as-search").addEventListener("input", (e) => {
  page.search = e.target.value.trim();
  clearTimeout(searchTimer);
  searchTimer = setTimeout(loadRecipients, 150);
});
$("as").addEventListener("change", (e) => {
  page.as = e.target.value;
  const url = new URL(location.href);
  url.searchParams.set("as", page.as);
  history.replaceState(null, "", url);
  refreshSoon();
});

setView(page.view, false);
connect();
