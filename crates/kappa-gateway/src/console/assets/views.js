// Lookups in any registered store: one key, a prefix or range scan, "as
// of" on versioned stores, windows on windowed ones; each answer shows the
// position it reflects.

export async function render(root, ctx) {
  const { api, el, params, signal } = ctx;
  const { body } = await api("/views", { signal });
  if (!body.views.length) {
    root.append(el("section", {}, el("p", { class: "muted" }, "This service registers no views.")));
    return;
  }
  const select = el("select", { id: "view-name" }, ...body.views.map((v) =>
    el("option", { value: v.name, selected: v.name === params.get("view") }, `${v.name} (${v.kind}, ${v.application_id})`)));
  const key = el("input", { id: "view-key", placeholder: "key" });
  const asOf = el("input", { id: "view-as-of", placeholder: "as of (ms or ISO time)" });
  const prefix = el("input", { id: "view-prefix", placeholder: "prefix" });
  const from = el("input", { id: "view-from", placeholder: "from key" });
  const to = el("input", { id: "view-to", placeholder: "to key" });
  const winFrom = el("input", { id: "view-window-from", placeholder: "windows from (ms)" });
  const winTo = el("input", { id: "view-window-to", placeholder: "windows to (ms)" });
  const position = el("p", { class: "muted", id: "view-position" });
  const result = el("div", { id: "view-result" });
  const kind = () => body.views.find((v) => v.name === select.value)?.kind;
  const asOfLabel = el("label", {}, "as of", asOf);
  const windowLabels = [el("label", {}, "windows from", winFrom), el("label", {}, "to", winTo)];
  const adapt = () => {
    asOfLabel.hidden = kind() !== "versioned";
    for (const l of windowLabels) l.hidden = kind() !== "windowed";
  };
  select.addEventListener("change", adapt);
  adapt();
  const show = async (path) => {
    result.dataset.state = "loading";
    try {
      const r = await api(path, { signal, allow: [404] });
      result.dataset.state = r.status === 404 ? "missing" : "found";
      position.textContent = r.body?.position ? `reflects ${r.body.position}` : "";
      if (r.status === 404) {
        result.replaceChildren(el("p", { class: "muted" }, r.body?.detail ?? "not found"));
      } else if (r.body.entries) {
        result.replaceChildren(el("table", {},
          ctx.thead("key", "value"),
          el("tbody", {}, r.body.entries.map((e) => el("tr", { class: "entry" },
            el("td", {}, el("pre", {}, JSON.stringify(e.key))), el("td", {}, el("pre", {}, JSON.stringify(e.value, null, 2))))))),
          r.body.next_after !== undefined ? el("p", { class: "muted" }, `more after ${JSON.stringify(r.body.next_after)}`) : null);
      } else if (r.body.windows) {
        result.replaceChildren(el("table", {},
          ctx.thead("window start", "value"),
          el("tbody", {}, r.body.windows.map((w) => el("tr", { class: "entry" },
            el("td", {}, new Date(w.start).toISOString()), el("td", {}, el("pre", {}, JSON.stringify(w.value))))))));
      } else {
        result.replaceChildren(el("pre", { class: "value" }, JSON.stringify(r.body.value, null, 2)),
          r.body.valid_from !== undefined ? el("p", { class: "muted" }, `valid from ${new Date(r.body.valid_from).toISOString()}`) : null);
      }
    } catch (e) {
      result.dataset.state = "error";
      result.replaceChildren(ctx.failure(e));
    }
  };
  const ms = (text) => (/^\d+$/.test(text) ? text : String(Date.parse(text)));
  const lookup = (e) => {
    e.preventDefault();
    const view = encodeURIComponent(select.value);
    const k = encodeURIComponent(key.value);
    if (kind() === "windowed") {
      const q = new URLSearchParams();
      if (winFrom.value) q.set("from", ms(winFrom.value));
      if (winTo.value) q.set("to", ms(winTo.value));
      return show(`/views/${view}/${k}/windows?${q}`);
    }
    const q = new URLSearchParams();
    if (kind() === "versioned" && asOf.value) q.set("as_of", ms(asOf.value));
    return show(`/views/${view}/${k}${q.size ? `?${q}` : ""}`);
  };
  const scan = (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ limit: "100" });
    if (prefix.value) q.set("prefix", prefix.value);
    if (from.value) q.set("from", from.value);
    if (to.value) q.set("to", to.value);
    return show(`/views/${encodeURIComponent(select.value)}?${q}`);
  };
  root.append(el("section", {},
    el("h2", {}, "Views"),
    el("div", { class: "controls" }, el("label", {}, "view", select)),
    el("form", { class: "controls", id: "view-lookup", onsubmit: lookup },
      el("label", {}, "key", key), asOfLabel, ...windowLabels, el("button", { type: "submit", id: "view-get" }, "Look up")),
    el("form", { class: "controls", id: "view-scan", onsubmit: scan },
      el("label", {}, "prefix", prefix), el("label", {}, "from", from), el("label", {}, "to", to),
      el("button", { type: "submit", id: "view-scan-go" }, "Scan")),
    position, result));
  if (params.get("view") && !params.get("key")) scan(new Event("submit"));
}
