// The zidl web page: the registry's devices, live, from the descriptions the API serves (docs/web.md).
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const LOG_LINES = 200;
const devicesNode = document.getElementById("devices");
const statusNode = document.getElementById("status");
const cards = new Map(); // device name -> {record, node, close()}

// --- talking to the API ------------------------------------------------------------------------

function request(method, path, body) {
  const headers = TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
  const options = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  return fetch(path, options);
}

async function errorText(response) {
  try {
    const { error } = await response.json();
    return error.type === "ValidationError" ? error.message : `${error.type}: ${error.message}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function socketUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (TOKEN) url.searchParams.set("token", TOKEN);
  return url.href;
}

const quoted = (name) => encodeURIComponent(name);

// --- building nodes ----------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function clock(seconds) {
  const time = new Date(seconds * 1000);
  return time.toLocaleTimeString([], { hour12: false }) + "." + String(time.getMilliseconds()).padStart(3, "0");
}

// --- values: how a result, an item or a property value is shown --------------------------------

function isArray(value) {
  return value && typeof value === "object" && "dtype" in value && "shape" in value && "base64" in value;
}

function arrayView(value) {
  const [height, width, channels] = value.shape;
  const text = el("span", { class: "value" }, `ndarray ${value.dtype} (${value.shape.join(", ")})`);
  const drawable =
    value.dtype === "uint8" && (value.shape.length === 2 || (value.shape.length === 3 && channels === 3));
  if (!drawable) return text;
  const bytes = Uint8Array.from(atob(value.base64), (c) => c.charCodeAt(0));
  const canvas = el("canvas", { width, height, class: "array" });
  const image = canvas.getContext("2d").createImageData(width, height);
  const step = value.shape.length === 2 ? 1 : 3;
  for (let i = 0; i < width * height; i += 1) {
    const j = i * step;
    const red = bytes[j];
    const [green, blue] = step === 3 ? [bytes[j + 1], bytes[j + 2]] : [red, red];
    image.data.set([red, green, blue, 255], i * 4);
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
  return el("div", {}, text, canvas);
}

function render(value) {
  if (typeof value === "string" && value.startsWith("data:image/")) return el("img", { src: value, alt: "image" });
  if (typeof value === "string" && value.startsWith("data:")) {
    const size = Math.floor((value.length - value.indexOf(",") - 1) * 0.75);
    return el("a", { href: value, download: "value.bin" }, `${size} bytes`);
  }
  if (isArray(value)) return arrayView(value);
  if (value && typeof value === "object" && hasPicture(value)) {
    const table = el("table", { class: "props" });
    for (const [key, item] of Object.entries(value)) {
      table.append(el("tr", {}, el("td", { class: "name" }, key), el("td", {}, render(item))));
    }
    return table;
  }
  const text = JSON.stringify(value);
  return el("pre", { class: "value" }, text.length > 60 ? JSON.stringify(value, null, 1) : text);
}

function hasPicture(value) {
  if (typeof value === "string") return value.startsWith("data:");
  if (isArray(value)) return true;
  return value && typeof value === "object" && Object.values(value).some(hasPicture);
}

function inline(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

// --- inputs: one for each IDL type -------------------------------------------------------------

// An input for a value of IDL type `type`; read() gives the value, or undefined to leave it out.
function inputFor(type, description, { constraints = {}, value, name }) {
  const choices = description.enums.find((e) => e.name === type);
  if (type === "bool") {
    const node = el("input", { type: "checkbox", name, checked: value === true });
    return { node, read: () => node.checked };
  }
  if (type === "int" || type === "float") {
    const low = constraints.ge ?? constraints.gt;
    const high = constraints.le ?? constraints.lt;
    const step = constraints.multiple_of ?? (type === "int" ? 1 : "any");
    const node = el("input", { type: "number", name, min: low, max: high, step, value: value ?? undefined });
    const hint = low !== undefined || high !== undefined ? `${low ?? "…"} to ${high ?? "…"}` : undefined;
    if (hint) node.title = hint;
    return { node, read: () => (node.value === "" ? undefined : Number(node.value)) };
  }
  if (choices) {
    const node = el("select", { name }, ...choices.values.map((v) => el("option", { value: v, selected: v === value }, v)));
    return { node, read: () => node.value };
  }
  if (type === "str") {
    const node = el("input", { type: "text", name, value: value ?? "" });
    if (constraints.pattern) node.placeholder = constraints.pattern;
    return { node, read: () => node.value };
  }
  const node = el("textarea", { name, rows: 1, placeholder: `${type} as JSON` });
  node.value = value === undefined ? "" : JSON.stringify(value);
  return {
    node,
    read: () => {
      if (node.value.trim() === "") return undefined;
      try {
        return JSON.parse(node.value);
      } catch {
        throw new Error(`${name}: not JSON`);
      }
    },
  };
}

// --- a device's card ---------------------------------------------------------------------------

function addDevice(record) {
  const node = el(
    "section",
    { class: "device", "data-device": record.name },
    el("h2", {}, record.name),
    el("p", { class: "kind" }, `${record.interface} v${record.version} · ${record.address}`),
  );
  const sockets = new Set();
  const card = {
    record,
    node,
    sockets,
    close() {
      for (const socket of sockets) socket.close();
      node.remove();
    },
  };
  cards.set(record.name, card);
  devicesNode.append(node);
  updateEmpty();
  build(card).catch((error) => node.append(el("p", { class: "error" }, String(error))));
}

function removeDevice(name) {
  const card = cards.get(name);
  if (!card) return;
  cards.delete(name);
  card.close();
  updateEmpty();
}

function updateEmpty() {
  document.getElementById("empty").hidden = cards.size > 0;
}

async function build(card) {
  const name = card.record.name;
  const response = await request("GET", `/api/devices/${quoted(name)}`);
  if (!response.ok) throw new Error(await errorText(response));
  const description = await response.json();
  if (!cards.has(name) || cards.get(name) !== card) return;
  if (description.doc) card.node.querySelector(".kind").title = description.doc;
  const properties = propertiesSection(card, description);
  const log = el("ul", { class: "log" });
  const events = new WebSocket(socketUrl(`/api/devices/${quoted(name)}/events`));
  card.sockets.add(events);
  events.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.error) return;
    properties.signalled(event.signal, event.args);
    log.prepend(el("li", {}, el("time", {}, clock(event.time)), `${event.signal} ${event.args.map(inline).join(" ")}`));
    while (log.childElementCount > LOG_LINES) log.lastChild.remove();
  };
  await new Promise((resolve) => {
    events.onopen = resolve;
    events.onerror = resolve;
  });
  properties.readAll();
  if (description.properties.length) card.node.append(el("h3", {}, "Properties"), properties.node);
  if (description.methods.length) {
    card.node.append(el("h3", {}, "Methods"), ...description.methods.map((m) => methodForm(card, description, m)));
  }
  if (description.signals.length) card.node.append(el("h3", {}, "Signals"), log);
}

function propertiesSection(card, description) {
  const name = card.record.name;
  const rows = new Map(); // property -> {show(value)}
  const table = el("table", { class: "props" });
  for (const prop of description.properties) {
    const shown = el("span", { class: "value" }, "…");
    const cell = el("td", {}, shown);
    const row = el("tr", { "data-property": prop.name }, el("td", { class: "name", title: prop.doc }, prop.name), cell);
    let input = null;
    let refresh = null;
    if (prop.writable) {
      const problem = el("span", { class: "error", role: "alert" });
      const set = el("button", { type: "submit", class: "secondary" }, "Set");
      const form = el("form", { class: "edit", novalidate: true });
      cell.append(form, problem);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        problem.textContent = "";
        set.disabled = true;
        try {
          const value = input.read();
          const response = await request("PUT", `/api/devices/${quoted(name)}/properties/${quoted(prop.name)}`, {
            value: value === undefined ? null : value,
          });
          if (response.ok) show((await response.json()).value);
          else problem.textContent = await errorText(response);
        } catch (error) {
          problem.textContent = error.message;
        } finally {
          set.disabled = false;
        }
      });
      refresh = (value) => {
        const fresh = inputFor(prop.type, description, { constraints: prop.constraints, value, name: prop.name });
        if (input) input.node.replaceWith(fresh.node);
        else form.append(fresh.node, set);
        input = fresh;
      };
    }
    const show = (value) => {
      shown.replaceChildren(renderShort(value));
      if (refresh && document.activeElement !== input?.node) refresh(value);
    };
    const fail = (text) => shown.replaceChildren(el("span", { class: "error" }, text));
    rows.set(prop.name, { show, fail });
    table.append(row);
  }
  const notifying = new Map(description.properties.filter((p) => p.notify).map((p) => [p.notify, p.name]));
  return {
    node: table,
    signalled(signal, args) {
      const prop = notifying.get(signal);
      if (prop !== undefined && args.length === 1) rows.get(prop).show(args[0]);
    },
    readAll() {
      for (const [prop, row] of rows) {
        request("GET", `/api/devices/${quoted(name)}/properties/${quoted(prop)}`).then(async (response) => {
          if (response.ok) row.show((await response.json()).value);
          else row.fail(await errorText(response));
        });
      }
    },
  };
}

function renderShort(value) {
  return hasPicture(value) ? render(value) : document.createTextNode(inline(value));
}

function methodForm(card, description, method) {
  const name = card.record.name;
  const path = `/api/devices/${quoted(name)}/methods/${quoted(method.name)}`;
  const inputs = method.args.map((arg) => [
    arg,
    inputFor(arg.type, description, { constraints: arg.constraints, value: arg.default, name: arg.name }),
  ]);
  const problem = el("span", { class: "error", role: "alert" });
  const result = el("div", { class: "result" });
  const run = el("button", { type: "submit" }, method.kind === "stream" ? "Start" : "Call");
  const cancel = el("button", { type: "button", class: "secondary", hidden: true }, "Cancel");
  const form = el("form", { class: "args", novalidate: true });
  for (const [arg, input] of inputs) {
    form.append(el("label", { title: arg.doc }, `${arg.name}`, el("small", {}, ` ${arg.type}`)), input.node);
  }
  form.append(el("div", { class: "actions" }, run, cancel, problem));
  const args = () => {
    const values = {};
    for (const [arg, input] of inputs) {
      const value = input.read();
      if (value !== undefined) values[arg.name] = value;
    }
    return values;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    problem.textContent = "";
    try {
      if (method.kind === "stream") openStream(card, path, args(), { run, cancel, problem, result });
      else call(path, args(), method, { run, problem, result });
    } catch (error) {
      problem.textContent = error.message;
    }
  });
  return el(
    "details",
    { class: "method", "data-method": method.name },
    el("summary", {}, method.name, method.kind === "stream" ? " (stream)" : ""),
    method.doc ? el("p", { class: "doc" }, method.doc) : null,
    form,
    result,
  );
}

async function call(path, values, method, { run, problem, result }) {
  run.disabled = true;
  try {
    const response = await request("POST", path, values);
    if (!response.ok) {
      problem.textContent = await errorText(response);
      return;
    }
    const kind = response.headers.get("Content-Type") || "";
    if (kind.startsWith("application/json")) {
      const body = await response.json();
      const nothing = !method.returns && !method.result.length; // the description's way of saying `none`
      result.replaceChildren(nothing ? el("span", {}, "done") : render(body.result));
    } else {
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      result.replaceChildren(
        kind.startsWith("image/") ? el("img", { src: url, alt: "result" }) : el("a", { href: url, download: "result.bin" }, `${blob.size} bytes`),
      );
    }
  } catch (error) {
    problem.textContent = error.message;
  } finally {
    run.disabled = false;
  }
}

function openStream(card, path, values, { run, cancel, problem, result }) {
  const socket = new WebSocket(socketUrl(path));
  socket.binaryType = "blob";
  card.sockets.add(socket);
  const progress = el("progress", { hidden: true });
  const counter = el("span", { class: "frames" }, "0 items");
  const picture = el("img", { alt: "stream", class: "stream", hidden: true });
  const latest = el("div", {});
  const status = el("span", { class: "stream-status" }, "running");
  result.replaceChildren(el("div", {}, status, " · ", counter), progress, picture, latest);
  let items = 0;
  let shown = null;
  run.disabled = true;
  cancel.hidden = false;
  cancel.onclick = () => {
    status.textContent = "cancelled";
    socket.close();
  };
  socket.onopen = () => socket.send(JSON.stringify(values));
  socket.onmessage = async (message) => {
    if (message.data instanceof Blob) {
      items += 1;
      const url = URL.createObjectURL(message.data);
      picture.onload = () => shown && URL.revokeObjectURL(shown);
      picture.hidden = false;
      picture.src = url;
      shown = url;
    } else {
      const body = JSON.parse(message.data);
      if ("item" in body) {
        items += 1;
        const { item } = body;
        if (item && typeof item.done === "number" && typeof item.total === "number") {
          progress.hidden = false;
          progress.max = item.total;
          progress.value = item.done;
        }
        latest.replaceChildren(render(item));
      } else if ("result" in body) {
        status.textContent = "finished";
        latest.replaceChildren(render(body.result));
      } else if ("error" in body) {
        status.textContent = "failed";
        problem.textContent = `${body.error.type}: ${body.error.message}`;
      }
    }
    counter.textContent = `${items} item${items === 1 ? "" : "s"}`;
  };
  socket.onclose = (event) => {
    card.sockets.delete(socket);
    if (status.textContent === "running") status.textContent = event.code === 1000 ? "ended" : `closed (${event.code})`;
    run.disabled = false;
    cancel.hidden = true;
  };
}

// --- the registry's devices, live ----------------------------------------------------------------

function follow() {
  const socket = new WebSocket(socketUrl("/api/events"));
  socket.onopen = () => {
    statusNode.textContent = "live";
    statusNode.classList.remove("down");
  };
  socket.onmessage = (message) => {
    const { change, device } = JSON.parse(message.data);
    const known = cards.get(device.name);
    if (change === "added") {
      if (known && known.record.address === device.address) return;
      removeDevice(device.name);
      addDevice(device);
    } else if (known && known.record.address === device.address) {
      removeDevice(device.name);
    }
  };
  socket.onclose = () => {
    statusNode.textContent = "disconnected; retrying…";
    statusNode.classList.add("down");
    for (const name of [...cards.keys()]) removeDevice(name);
    setTimeout(follow, 1000);
  };
}

follow();
