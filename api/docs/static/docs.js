// The API page's reference and console, built from /api/v1/openapi.json. No dependencies.
"use strict";

const SPEC_URL = "/api/v1/openapi.json";
const SHOWN_HEADERS = [
  "X-RateLimit-Limit",
  "X-RateLimit-Remaining",
  "X-RateLimit-Reset",
  "RateLimit-Policy",
  "RateLimit",
  "Retry-After",
  "X-Request-ID",
];
// Where the console's path parameters come from.
const PLACEHOLDERS = {
  keyId: "a key id from GET /auth/keys",
  webhookId: "an endpoint id from GET /webhooks",
  deliveryId: "msg_… from GET /webhooks/{webhookId}/deliveries",
};

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function operationsOf(spec) {
  const base = (spec.servers && spec.servers[0] && spec.servers[0].url) || "";
  const operations = [];
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      operations.push({ method: method.toUpperCase(), path, url: base + path, operation });
    }
  }
  return operations;
}

function schemaOf(spec, reference) {
  const name = reference.split("/").pop();
  return spec.components.schemas[name];
}

function renderReference(spec, operations) {
  const container = document.getElementById("operations");
  container.replaceChildren();
  for (const { method, url, operation } of operations) {
    const needsKey = (operation.security || []).length > 0;
    const card = element("article", { class: "operation", id: `op-${operation.operationId}` });
    card.append(
      element("h3", {},
        element("span", { class: `method ${method.toLowerCase()}`, text: method }),
        " ",
        element("code", { text: url }),
        needsKey ? "" : element("span", { class: "no-auth", text: " No auth" })),
      element("p", { text: operation.summary }),
    );
    const parameters = operation.parameters || [];
    if (parameters.length) {
      const list = element("ul", { class: "parameters" });
      for (const p of parameters) {
        const s = p.schema || {};
        let range = "";
        if (s.enum) range = s.enum.join(" | ");
        else if (s.minimum !== undefined) range = `${s.minimum}-${s.maximum}`;
        list.append(element("li", {},
          element("code", { text: p.name }), ` (${p.in}${range ? ": " + range : ""}) `,
          p.description || ""));
      }
      card.append(element("p", { text: "Parameters:" }), list);
    }
    const body = operation.requestBody;
    if (body) {
      const schema = schemaOf(spec, body.content["application/json"].schema.$ref);
      const example = (schema.examples && schema.examples[0]) || {};
      card.append(element("p", {}, "Body: ", element("code", { text: JSON.stringify(example) })));
    }
    const statuses = Object.entries(operation.responses)
      .map(([status, r]) => `${status} ${r.description}`);
    card.append(element("details", {},
      element("summary", { text: "Responses" }),
      element("ul", {}, ...statuses.map((s) => element("li", { text: s })))));
    container.append(card);
  }
}

function renderParameters(spec, chosen) {
  const container = document.getElementById("parameters");
  container.replaceChildren();
  for (const p of chosen.operation.parameters || []) {
    const id = `param-${p.name}`;
    const s = p.schema || {};
    let input;
    if (s.enum) {
      input = element("select", { id, name: p.name, "data-in": p.in });
      for (const option of s.enum) input.append(element("option", { value: option, text: option }));
      if (s.default !== undefined) input.value = s.default;
    } else {
      input = element("input", { id, name: p.name, "data-in": p.in, type: "text" });
      if (s.default !== undefined) input.value = s.default;
      if (PLACEHOLDERS[p.name]) input.placeholder = PLACEHOLDERS[p.name];
    }
    container.append(element("label", { for: id, text: `${p.name} (${p.in})` }), input);
  }
  const bodyField = document.getElementById("body-field");
  const body = chosen.operation.requestBody;
  bodyField.hidden = !body;
  if (body) {
    const schema = schemaOf(spec, body.content["application/json"].schema.$ref);
    const example = (schema.examples && schema.examples[0]) || {};
    document.getElementById("body").value = JSON.stringify(example, null, 2);
  }
}

async function send(chosen) {
  let path = chosen.url;
  const query = new URLSearchParams();
  for (const input of document.querySelectorAll("#parameters [data-in]")) {
    const value = input.value.trim();
    if (input.dataset.in === "path") path = path.replace(`{${input.name}}`, encodeURIComponent(value));
    else if (value !== "") query.append(input.name, value);
  }
  const url = query.toString() ? `${path}?${query}` : path;
  const headers = { Accept: "application/json" };
  const key = document.getElementById("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method: chosen.method, headers };
  if (chosen.operation.requestBody) {
    headers["Content-Type"] = "application/json";
    init.body = document.getElementById("body").value;
  }
  const started = performance.now();
  const response = await fetch(url, init);
  const elapsed = Math.round(performance.now() - started);
  const text = await response.text();
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
  document.getElementById("status").textContent = `${response.status} ${response.statusText}`;
  document.getElementById("status").className = response.ok ? "ok" : "error";
  document.getElementById("elapsed").textContent = `${chosen.method} ${url} · ${elapsed} ms`;
  const rows = document.querySelector("#response-headers tbody");
  rows.replaceChildren();
  for (const name of SHOWN_HEADERS) {
    const value = response.headers.get(name);
    if (value !== null) {
      rows.append(element("tr", {}, element("th", { text: name }), element("td", { text: value })));
    }
  }
  document.getElementById("response-body").textContent = shown || "(no body)";
  document.getElementById("result").hidden = false;
}

async function main() {
  // The curl examples (the first request's, the webhooks') name this server.
  for (const code of document.querySelectorAll("pre code")) {
    code.textContent = code.textContent.replaceAll("https://your-host", window.location.origin);
  }
  const response = await fetch(SPEC_URL);
  const spec = await response.json();
  document.getElementById("version").textContent = `Version ${spec.info.version}`;
  const operations = operationsOf(spec);
  renderReference(spec, operations);
  const select = document.getElementById("operation");
  operations.forEach((op, index) => {
    select.append(element("option", { value: String(index), text: `${op.method} ${op.url}` }));
  });
  const chosen = () => operations[Number(select.value)];
  select.addEventListener("change", () => renderParameters(spec, chosen()));
  renderParameters(spec, chosen());
  document.getElementById("console").addEventListener("submit", (event) => {
    event.preventDefault();
    send(chosen()).catch((error) => {
      document.getElementById("status").textContent = `Request failed: ${error}`;
      document.getElementById("result").hidden = false;
    });
  });
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.getElementById("operations").textContent = `Could not load the reference: ${error}`;
});
