// Sending commands through forms made from each action's JSON Schema, and
// the live command and event streams, filtered.

/** One input per property of an object schema; returns a reader of the values. */
function fields(el, schema, form) {
  const readers = [];
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const id = `field-${name}`;
    let input;
    if (Array.isArray(prop.enum)) {
      input = el("select", { id, name }, el("option", { value: "" }, ""), ...prop.enum.map((v) => el("option", { value: JSON.stringify(v) }, String(v))));
      readers.push([name, () => (input.value === "" ? undefined : JSON.parse(input.value))]);
    } else if (prop.type === "integer" || prop.type === "number") {
      input = el("input", { id, name, type: "number", min: prop.minimum, max: prop.maximum, step: prop.type === "integer" ? 1 : "any", required: required.has(name) });
      readers.push([name, () => (input.value === "" ? undefined : Number(input.value))]);
    } else if (prop.type === "boolean") {
      input = el("input", { id, name, type: "checkbox" });
      readers.push([name, () => input.checked]);
    } else if (prop.type === "string") {
      input = el("input", { id, name, type: "text", minlength: prop.minLength, maxlength: prop.maxLength, required: required.has(name) });
      readers.push([name, () => (input.value === "" ? undefined : input.value)]);
    } else {
      input = el("textarea", { id, name, rows: 3, placeholder: "JSON" });
      readers.push([name, () => (input.value.trim() === "" ? undefined : JSON.parse(input.value))]);
    }
    const hint = [prop.type, prop.minimum !== undefined ? `≥ ${prop.minimum}` : "", prop.maximum !== undefined ? `≤ ${prop.maximum}` : "", prop.pattern ?? ""].filter(Boolean).join(" ");
    form.append(el("label", { for: id }, `${name}${required.has(name) ? " *" : ""}`), input, el("span", { class: "muted hint" }, hint));
  }
  return () => {
    const data = {};
    for (const [name, read] of readers) {
      const v = read();
      if (v !== undefined) data[name] = v;
    }
    return data;
  };
}

function sender(root, ctx) {
  const { el, api, info, params } = ctx;
  const select = el("select", { id: "command-action" }, ...info.actions.map((a) => el("option", { value: a.name }, a.name)));
  const description = el("p", { class: "muted" });
  const form = el("form", { class: "command", id: "command-form" });
  const outcome = el("div", { id: "command-outcome" });
  let read = () => ({});
  const key = el("input", { id: "command-key", type: "text", placeholder: "the entity (partition key)" });
  const sync = el("input", { id: "command-sync", type: "checkbox", checked: true });
  const build = () => {
    const action = info.actions.find((a) => a.name === select.value);
    description.textContent = action?.description ?? "";
    form.replaceChildren(el("label", { for: "command-key" }, "key"), key, el("span", { class: "muted hint" }, "records about one entity stay in order"));
    read = action ? fields(el, action.schema, form) : () => ({});
    form.append(el("label", { for: "command-sync" }, "wait for the outcome"), sync,
      el("button", { type: "submit", id: "command-send" }, "Send"));
  };
  select.addEventListener("change", build);
  if (params.get("action")) select.value = params.get("action");
  build();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let data;
    try { data = read(); } catch (err) {
      outcome.dataset.status = "400";
      outcome.replaceChildren(el("p", { class: "error" }, `not JSON: ${err.message}`));
      return;
    }
    const body = { action: select.value, data };
    if (key.value) body.key = key.value;
    outcome.dataset.status = "sending";
    outcome.replaceChildren(el("p", { class: "muted" }, "sending…"));
    try {
      const r = await api(`/commands${sync.checked ? "?sync=true" : ""}`, { method: "POST", body, allow: [400, 409, 413, 422, 429, 504] });
      outcome.dataset.status = String(r.status);
      const events = r.body?.events ?? [];
      outcome.replaceChildren(
        el("p", {}, `${r.status} · ${r.body?.id ?? r.body?.detail ?? ""}`, r.body?.position ? ` at ${r.body.position}` : ""),
        events.length ? el("ul", { class: "outcome-events" }, ...events.map((ev) => el("li", { class: "outcome-event", dataset: { action: ev.action } },
          el("span", { class: "action" }, ev.action), " ", el("a", { class: "provenance", href: `#/topics?topic=${encodeURIComponent(ev.topic)}&partition=${ev.partition}&offset=${ev.offset}&highlight=${ev.offset}` }, ev.position)))) : null,
        el("pre", {}, JSON.stringify(r.body, null, 2)));
    } catch (err) {
      outcome.dataset.status = String(err.status ?? 0);
      outcome.replaceChildren(ctx.failure(err));
    }
  });
  root.append(el("section", {}, el("h2", {}, "Send a command"),
    el("div", { class: "controls" }, el("label", {}, "action", select)), description, form, outcome));
}

/** A live stream pane: server-side action filter and sampling, text filter here. */
function stream(ctx, title, path, id) {
  const { el, live, batcher } = ctx;
  const MAX = 200;
  const action = el("input", { id: `${id}-action`, placeholder: "action (exact)" });
  const text = el("input", { id: `${id}-filter`, placeholder: "contains…" });
  const paused = el("input", { type: "checkbox", id: `${id}-pause` });
  const counter = el("span", { class: "muted", id: `${id}-count` }, "0 received");
  const list = el("div", { class: "stream", id });
  let received = 0, skipped = 0;
  let controller = null;
  // Each (re)start is a generation; frames of an earlier one still waiting
  // in the batch are dropped.
  let generation = 0;
  const show = batcher((batch) => {
    if (paused.checked) return;
    const needle = text.value.trim();
    const rows = batch.filter((b) => b.generation === generation).map((b) => b.record)
      .filter((r) => !needle || JSON.stringify(r).includes(needle)).slice(-MAX).reverse()
      .map((r) => el("div", { class: "item", dataset: { action: r.action, id: r.id } },
        el("span", { class: "action" }, r.action), el("span", { class: "muted" }, `${r.key ?? ""} ${r.position}`),
        el("pre", {}, JSON.stringify(r.data))));
    list.prepend(...rows);
    while (list.childElementCount > MAX) list.lastElementChild.remove();
    counter.textContent = `${received} received${skipped ? ` · ${skipped} skipped by sampling` : ""}`;
  });
  const start = () => {
    controller?.abort();
    controller = new AbortController();
    const q = new URLSearchParams({ max_rate: "50" });
    if (action.value.trim()) q.set("action", action.value.trim());
    list.replaceChildren();
    received = 0;
    skipped = 0;
    const current = ++generation;
    counter.textContent = "0 received";
    const on = { [id === "command-stream" ? "command" : "event"]: (record) => { if (current === generation) received++; show({ generation: current, record }); },
      sampled: (s) => { skipped += s.skipped; } };
    live(`${path}?${q}`, on, AbortSignal.any([ctx.signal, controller.signal]));
  };
  action.addEventListener("change", start);
  start();
  return el("section", {}, el("h2", {}, title),
    el("div", { class: "controls" }, el("label", {}, "action", action), el("label", {}, "filter", text),
      el("label", {}, "pause", paused), counter), list);
}

export async function render(root, ctx) {
  sender(root, ctx);
  root.append(ctx.el("div", { class: "columns" },
    stream(ctx, "Live commands", "/commands/updates", "command-stream"),
    stream(ctx, "Live events", "/events/updates", "event-stream")));
}
