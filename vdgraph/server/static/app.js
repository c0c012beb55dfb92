// The vdgraph page: plain JavaScript, no build step, nothing loaded from outside the server.
// Text from the server is always put in with textContent, never parsed as HTML.
"use strict";

const PAGE = 10;
const SVG = "http://www.w3.org/2000/svg";
const ui = {
  token: localStorage.getItem("vdgraph-token") || tokenFromHash(),
  workflows: [],
  job: null,        // the job shown
  stream: null,     // its EventSource
  nodes: {},        // node id -> {state, step, total}
  offset: 0,
};

function $(id) { return document.getElementById(id); }
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}
function tokenFromHash() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : "";
}
function withToken(url) {
  return ui.token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(ui.token) : url;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (ui.token) headers["Authorization"] = "Bearer " + ui.token;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("token-form").hidden = false;
    $("status").textContent = "this server needs a token";
    throw new Error("401");
  }
  let data = null;
  try { data = parseJSON(await response.text()); } catch (e) { data = null; }
  return { status: response.status, data };
}

// -- workflows and the form ---------------------------------------------------------------------------------------

async function loadWorkflows() {
  const { data } = await api("/api/workflows");
  ui.workflows = data.workflows.filter((w) => !w.error);
  const select = $("workflow");
  select.replaceChildren(...ui.workflows.map((w) => el("option", { value: w.name, text: w.name })));
  const preferred = ui.workflows.find((w) => w.name === "text2video_zero") || ui.workflows[0];
  if (preferred) select.value = preferred.name;
  buildForm();
}

function currentWorkflow() { return ui.workflows.find((w) => w.name === $("workflow").value); }

function buildForm() {
  const workflow = currentWorkflow();
  $("workflow-description").textContent = workflow ? workflow.description : "";
  $("problems").hidden = true;
  const fields = $("fields");
  fields.replaceChildren();
  if (!workflow) return;
  for (const input of workflow.inputs) {
    let control;
    const isNumber = input.type === "int" || input.type === "float";
    if (input.choices) {
      control = el("select", {}, ...input.choices.map((c) => el("option", { value: toJSON(c), text: String(c) })));
      if ("default" in input) control.value = toJSON(input.default);
    } else if (input.type === "bool") {
      control = el("input", { type: "checkbox" });
      control.checked = Boolean(input.default);
    } else if (isNumber) {
      control = el("input", { type: "number", step: input.type === "int" ? "1" : "any" });
      if (input.min !== undefined) control.min = input.min;
      if (input.max !== undefined && input.max < 1e15) control.max = input.max;
      if ("default" in input && input.default !== null) control.value = input.default;
    } else {
      control = el("input", { type: "text" });
      if ("default" in input && input.default !== null) {
        control.value = input.type.startsWith("list") ? toJSON(input.default) : input.default;
      }
    }
    control.name = input.name;
    control.id = "input-" + input.name;
    control.dataset.type = input.type;
    const range = [input.min !== undefined ? "min " + input.min : "", input.max !== undefined ? "max " + input.max : ""]
      .filter(Boolean).join(", ");
    const label = el("label", { for: control.id }, el("span", { text: input.name }),
      el("span", { class: "muted", text: input.type + (range ? " (" + range + ")" : "") + (input.required ? " required" : "") }));
    fields.append(el("div", { class: "input" }, label, control, el("small", { text: input.description || "" })));
  }
}

function formValues() {
  const values = {};
  for (const control of $("fields").querySelectorAll("input, select")) {
    const type = control.dataset.type;
    if (control.tagName === "SELECT") values[control.name] = parseJSON(control.value);
    else if (type === "bool") values[control.name] = control.checked;
    else if (control.value === "") continue;
    else if (type === "int") values[control.name] = parseInteger(control.value);
    else if (type === "float") values[control.name] = Number.parseFloat(control.value);
    else if (type.startsWith("list")) {
      try { values[control.name] = parseJSON(control.value); } catch (e) { values[control.name] = control.value; }
    } else values[control.name] = control.value;
  }
  return values;
}

// Integers beyond 2^53 (a seed may go up to 2^64 - 1) do not survive a JavaScript number: they are kept as
// BigInt and written into the JSON body as their exact digits.
function parseInteger(text) {
  const trimmed = text.trim();
  if (!/^-?\d+$/.test(trimmed)) return Number.parseInt(trimmed, 10);  // the server names what is wrong with it
  const value = BigInt(trimmed);
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

function parseJSON(text) {
  return JSON.parse(text, (key, value, context) =>
    (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)
      ? BigInt(context.source) : value));
}

function toJSON(value) {
  // a marker no string of the value holds (a fresh random one each call), so no text is taken for a number
  const marker = "bigint" + crypto.getRandomValues(new Uint32Array(2)).join("x") + ":";
  return JSON.stringify(value, (key, v) => (typeof v === "bigint" ? marker + v.toString() : v))
    .replace(new RegExp('"' + marker + '(-?\\d+)"', "g"), "$1");
}

async function submitJob(event) {
  event.preventDefault();
  const body = toJSON({ workflow: $("workflow").value, inputs: formValues() });
  const { status, data } = await api("/api/jobs", { method: "POST", body });
  const list = $("problems");
  if (status === 201) {
    list.hidden = true;
    showJob(data.id);
    refreshHistory();
    return;
  }
  const problems = (data && data.problems) || [{ code: "http." + status, message: toJSON(data && data.detail) }];
  list.replaceChildren(...problems.map((p) => el("li", {}, el("code", { text: p.code }), " ",
    (p.node ? p.node + (p.port ? "." + p.port : "") + ": " : "") + p.message + (p.hint ? " (" + p.hint + ")" : ""))));
  list.hidden = false;
}

// -- one job: graph, progress, previews, results -------------------------------------------------------------------

async function showJob(id) {
  if (ui.stream) { ui.stream.close(); ui.stream = null; }
  const { status, data } = await api("/api/jobs/" + encodeURIComponent(id));
  if (status !== 200) return;
  ui.job = data;
  ui.nodes = {};
  for (const [node, info] of Object.entries(data.nodes || {})) ui.nodes[node] = Object.assign({}, info);
  for (const entry of data.report || []) {
    ui.nodes[entry.id] = Object.assign(ui.nodes[entry.id] || {}, { state: entry.status === "ran" ? "done" : "cached" });
  }
  if (data.error_node) ui.nodes[data.error_node] = Object.assign(ui.nodes[data.error_node] || {}, { state: "failed" });
  if ($("job-id").textContent !== data.id) $("preview-box").hidden = true;
  $("job-id").textContent = data.id;
  $("progress").replaceChildren();
  renderJob();
  drawGraph(data.graph);
  Object.keys(ui.nodes).forEach(renderBar);
  if (data.state === "queued" || data.state === "running") follow(data.id);
  highlightHistory();
}

function renderJob() {
  const job = ui.job;
  const state = $("job-state");
  state.textContent = job.state;
  state.className = "state " + job.state;
  $("cancel").hidden = !(job.state === "queued" || job.state === "running");
  const summary = [job.workflow];
  if (job.state === "queued" && job.position !== null && job.position !== undefined) summary.push(job.position + " job(s) ahead");
  if (job.finished && job.started) summary.push(((job.finished - job.started)).toFixed(2) + " s");
  $("job-summary").textContent = summary.join(" · ");
  const error = $("job-error");
  error.hidden = !job.error;
  error.textContent = job.error ? (job.error_node ? "node " + job.error_node + ": " : "") + job.error : "";
  renderOutputs(job.outputs);
}

function renderOutputs(outputs) {
  const results = $("results");
  const list = $("outputs");
  list.replaceChildren();
  if (!outputs) { results.hidden = true; return; }
  let video = null, sheet = null;
  for (const [name, value] of Object.entries(outputs)) {
    if (value && value.url) {
      const url = withToken(value.url);
      if (/\.(mp4|webm)$/i.test(value.file) && !video) video = url;
      else if (/\.(png|jpe?g|gif|webp)$/i.test(value.file) && !sheet) sheet = url;
      list.append(el("li", {}, name + ": ", el("a", { href: url, text: value.file, download: "" })));
    } else {
      list.append(el("li", { text: name + ": " + (typeof value === "object" ? toJSON(value) : String(value)) }));
    }
  }
  results.hidden = !(video || sheet);
  const player = $("video");
  if (video && player.dataset.src !== video) {
    player.dataset.src = video;
    player.src = video;
    player.play().catch(() => {});
  }
  player.parentElement.hidden = !video;
  $("sheet").parentElement.hidden = !sheet;
  if (sheet) $("sheet").src = sheet;
}

function follow(id) {
  const stream = new EventSource(withToken("/api/jobs/" + encodeURIComponent(id) + "/events"));
  ui.stream = stream;
  const handle = (message) => {
    if (!ui.job || ui.job.id !== id) return;
    onEvent(parseJSON(message.data));
  };
  for (const kind of ["job_queued", "job_started", "run_started", "node_started", "node_cached", "node_finished",
    "node_error", "progress", "preview", "cache_warning", "run_finished", "job_finished"]) {
    stream.addEventListener(kind, handle);
  }
  stream.onerror = () => { if (stream.readyState === EventSource.CLOSED) ui.stream = null; };
}

function onEvent(event) {
  const node = event.node;
  const info = node ? (ui.nodes[node] = ui.nodes[node] || { state: "waiting" }) : null;
  switch (event.kind) {
    case "job_started": ui.job.state = "running"; ui.job.position = null; renderJob(); break;
    case "run_started": for (const id of event.nodes) ui.nodes[id] = ui.nodes[id] || { state: "waiting" }; break;
    case "node_started": info.state = "running"; break;
    case "node_cached": info.state = "cached"; break;
    case "node_finished": info.state = "done"; break;
    case "node_error": info.state = "failed"; break;
    case "progress": info.step = event.step; info.total = event.total; info.state = "running"; break;
    case "preview":
      $("preview").src = "data:image/png;base64," + event.image;
      $("preview-caption").textContent = node + ": step " + event.step + " of " + event.total + " (" + event.source + ")";
      $("preview-box").hidden = false;
      return;
    case "job_finished":
      if (ui.stream) { ui.stream.close(); ui.stream = null; }
      showJob(ui.job.id);
      refreshHistory();
      return;
    default: break;
  }
  if (info) { colourNode(node); renderBar(node); }
}

function renderBar(node) {
  const info = ui.nodes[node];
  if (!info || !info.total) return;
  let bar = document.querySelector('.bar[data-node="' + CSS.escape(node) + '"]');
  if (!bar) {
    bar = el("div", { class: "bar" }, el("div", { class: "label" }, el("span", { text: node }), el("span", { class: "count" })),
      el("div", { class: "track" }, el("div", { class: "fill" })));
    bar.dataset.node = node;
    $("progress").append(bar);
  }
  bar.querySelector(".count").textContent = info.step + " / " + info.total;
  bar.querySelector(".fill").style.width = (100 * info.step / info.total).toFixed(1) + "%";
  bar.classList.toggle("done", info.step >= info.total);
}

// -- the DAG as an SVG, laid out in columns by depth ---------------------------------------------------------------

function drawGraph(graph) {
  const svg = $("graph");
  svg.replaceChildren();
  if (!graph) return;
  const depth = {};
  const incoming = {};
  for (const node of graph.nodes) incoming[node.id] = [];
  for (const edge of graph.edges) incoming[edge.to].push(edge.from);
  const visit = (id, seen = new Set()) => {
    if (id in depth) return depth[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    depth[id] = incoming[id].length ? 1 + Math.max(...incoming[id].map((up) => visit(up, seen))) : 0;
    return depth[id];
  };
  graph.nodes.forEach((node) => visit(node.id));
  const columns = [];
  for (const node of graph.nodes) (columns[depth[node.id]] = columns[depth[node.id]] || []).push(node);
  // top to bottom: one row per depth, the nodes of a row side by side
  const W = 120, H = 32, GX = 12, GY = 22, PAD = 8;
  const place = {};
  const widest = Math.max(...columns.map((c) => c.length));
  columns.forEach((row, y) => row.forEach((node, x) => {
    const offset = (widest - row.length) * (W + GX) / 2;
    place[node.id] = { x: PAD + offset + x * (W + GX), y: PAD + y * (H + GY) };
  }));
  svg.setAttribute("width", PAD * 2 + widest * (W + GX) - GX);
  svg.setAttribute("height", PAD * 2 + columns.length * (H + GY) - GY);
  for (const edge of graph.edges) {
    const a = place[edge.from], b = place[edge.to];
    if (!a || !b) continue;
    const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y, mid = (y1 + y2) / 2;
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", `M${x1},${y1} C${x1},${mid} ${x2},${mid} ${x2},${y2}`);
    path.setAttribute("class", "edge");
    svg.append(path);
  }
  for (const node of graph.nodes) {
    const p = place[node.id];
    const group = document.createElementNS(SVG, "g");
    group.setAttribute("class", "node");
    group.dataset.node = node.id;
    group.setAttribute("transform", `translate(${p.x},${p.y})`);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("width", W);
    rect.setAttribute("height", H);
    const title = document.createElementNS(SVG, "title");
    title.textContent = node.id + " (" + node.type + ")" + (node.description ? ": " + node.description : "");
    const name = document.createElementNS(SVG, "text");
    name.setAttribute("x", 6); name.setAttribute("y", 14); name.setAttribute("font-weight", "600");
    name.textContent = node.id;
    const type = document.createElementNS(SVG, "text");
    type.setAttribute("x", 6); type.setAttribute("y", 27);
    type.textContent = node.type.length > 19 ? node.type.slice(0, 18) + "…" : node.type;
    group.append(title, rect, name, type);
    svg.append(group);
    colourNode(node.id);
  }
}

function colourNode(node) {
  const group = document.querySelector('#graph .node[data-node="' + CSS.escape(node) + '"]');
  if (group) group.setAttribute("class", "node " + ((ui.nodes[node] || {}).state || "waiting"));
}

// -- queue and history --------------------------------------------------------------------------------------------

async function refreshHistory() {
  let result;
  try { result = await api("/api/jobs?limit=" + PAGE + "&offset=" + ui.offset); } catch (e) { return; }
  const { data } = result;
  const body = $("history").querySelector("tbody");
  body.replaceChildren(...data.jobs.map((job) => {
    const state = el("span", { class: "state " + job.state, text: job.state + (job.position ? " (" + job.position + " ahead)" : "") });
    const cancel = el("button", { type: "button", text: "cancel", class: "small" });
    cancel.hidden = !(job.state === "queued" || job.state === "running");
    cancel.addEventListener("click", (event) => { event.stopPropagation(); cancelJob(job.id); });
    const row = el("tr", {}, el("td", { class: "mono", text: job.id }), el("td", { text: job.workflow }), el("td", {}, state),
      el("td", { text: new Date(job.created * 1000).toLocaleTimeString() }), el("td", {}, cancel));
    row.dataset.job = job.id;
    row.addEventListener("click", () => showJob(job.id));
    return row;
  }));
  $("page-info").textContent = data.total ? (ui.offset + 1) + "-" + (ui.offset + data.jobs.length) + " of " + data.total : "no jobs yet";
  $("newer").disabled = ui.offset === 0;
  $("older").disabled = data.next_offset === null;
  highlightHistory();
}

function highlightHistory() {
  for (const row of $("history").querySelectorAll("tbody tr")) {
    row.classList.toggle("selected", Boolean(ui.job) && row.dataset.job === ui.job.id);
  }
}

async function cancelJob(id) {
  await api("/api/jobs/" + encodeURIComponent(id), { method: "DELETE" });
  refreshHistory();
  if (ui.job && ui.job.id === id) setTimeout(() => showJob(id), 300);
}

// -- start ---------------------------------------------------------------------------------------------------------

function start() {
  $("workflow").addEventListener("change", buildForm);
  $("job-form").addEventListener("submit", submitJob);
  $("cancel").addEventListener("click", () => ui.job && cancelJob(ui.job.id));
  $("newer").addEventListener("click", () => { ui.offset = Math.max(0, ui.offset - PAGE); refreshHistory(); });
  $("older").addEventListener("click", () => { ui.offset += PAGE; refreshHistory(); });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    ui.token = $("token").value;
    localStorage.setItem("vdgraph-token", ui.token);
    $("token-form").hidden = true;
    $("status").textContent = "";
    loadWorkflows().then(refreshHistory);
  });
  loadWorkflows().then(refreshHistory).catch(() => {});
  setInterval(refreshHistory, 2000);
}

start();
