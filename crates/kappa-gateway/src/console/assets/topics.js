// Every topic with its partitions, offsets, rate and consumer lag; and a
// record browser whose provenance headers link to the records they name.

function list(root, ctx, body) {
  const { el, thead } = ctx;
  const rates = new Map();
  const rows = body.topics.map((t) => {
    const rate = el("td", { class: "num rate" }, "–");
    rates.set(t.name, rate);
    const records = t.partitions.reduce((n, p) => n + (p.end - p.start), 0);
    return el("tr", { class: "topic", dataset: { topic: t.name } },
      el("td", {}, el("a", { href: `#/topics?topic=${encodeURIComponent(t.name)}` }, t.name)),
      el("td", { class: "num" }, t.partitions.length),
      el("td", {}, t.partitions.map((p) => `${p.partition}: ${p.start}–${p.end}`).join("  ")),
      el("td", { class: "num" }, records),
      rate,
      el("td", {}, [t.compacted ? "compacted" : "", t.internal ? "internal" : ""].filter(Boolean).join(", ")));
  });
  root.append(el("section", {},
    el("h2", {}, "Topics"),
    el("table", { id: "topics-table" },
      thead("topic", "partitions", "offsets (start–end)", "records", "rate/s", ""),
      el("tbody", {}, rows))));
  const lag = body.groups.map((g) => el("tr", {},
    el("td", {}, g.group), el("td", {}, g.kind), el("td", {}, `${g.topic}/${g.partition}`),
    el("td", { class: "num" }, g.position), el("td", { class: "num" }, g.end), el("td", { class: "num" }, g.lag)));
  root.append(el("section", {},
    el("h2", {}, "Consumer groups"),
    el("table", { id: "groups-table" },
      thead("group", "kind", "partition", "position", "end", "lag"),
      el("tbody", {}, lag))));
  ctx.live("/console/api/stats/updates", {
    stats(s) {
      for (const t of s.topics) {
        const cell = rates.get(t.name);
        if (cell) cell.textContent = t.rate ?? "–";
      }
    },
  }, ctx.signal);
}

function pretty(value, format) {
  if (format === "json") return JSON.stringify(value, null, 2);
  if (format === "null") return "∅";
  return format === "hex" ? `0x${value}` : String(value);
}

async function browser(root, ctx, topic) {
  const { api, el, thead, params, navigate, signal } = ctx;
  const partition = params.get("partition") ?? "0";
  const mode = params.has("offset") ? "offset" : params.has("time") ? "time" : "latest";
  const highlight = params.get("highlight");
  const partitionInput = el("input", { type: "number", min: 0, value: partition, id: "browse-partition" });
  const modeSelect = el("select", { id: "browse-mode" },
    ...["latest", "offset", "time"].map((m) => el("option", { value: m, selected: m === mode }, m)));
  const at = el("input", { id: "browse-at", placeholder: "offset or time (ms / ISO)",
    value: params.get("offset") ?? params.get("time") ?? "" });
  const go = (extra = {}) => {
    const p = { topic, partition: partitionInput.value || "0", ...extra };
    const m = modeSelect.value;
    if (m === "offset") p.offset = at.value || "0";
    if (m === "time") p.time = /^\d+$/.test(at.value) ? at.value : String(Date.parse(at.value) || 0);
    navigate("topics", p);
  };
  const section = el("section", { id: "record-browser" },
    el("h2", {}, `Records of ${topic}`),
    el("form", { class: "controls", onsubmit: (e) => { e.preventDefault(); go(); } },
      el("label", {}, "partition", partitionInput),
      el("label", {}, "from", modeSelect),
      el("label", {}, "at", at),
      el("button", { type: "submit", id: "browse-load" }, "Load"),
      el("a", { href: "#/topics" }, "all topics")));
  root.append(section);
  const q = new URLSearchParams({ partition, limit: "50" });
  if (mode === "offset") q.set("offset", params.get("offset"));
  else if (mode === "time") q.set("time", params.get("time"));
  else q.set("from", "latest");
  let page;
  try {
    page = (await api(`/console/api/topics/${encodeURIComponent(topic)}/records?${q}`, { signal })).body;
  } catch (e) {
    section.append(ctx.failure(e));
    return;
  }
  section.append(el("p", { class: "muted", id: "browse-range" },
    `partition ${page.partition} holds offsets ${page.start}–${page.end}; showing ${page.records.length} from ${page.from}`));
  const rows = page.records.map((r) => {
    const links = r.provenance.map((p) => el("a", {
      class: "provenance", dataset: { header: p.header },
      href: `#/topics?topic=${encodeURIComponent(p.topic)}&partition=${p.partition}&offset=${p.offset}&highlight=${p.offset}`,
    }, `${p.header.replace(/^kappa-/, "")} → ${p.topic}/${p.partition}/${p.offset}`));
    const others = r.headers.filter((h) => !r.provenance.some((p) => p.header === h.name));
    return el("tr", { class: `record${String(r.offset) === highlight ? " highlighted" : ""}`, dataset: { offset: r.offset } },
      el("td", { class: "num" }, r.offset),
      el("td", {}, new Date(r.timestamp).toISOString()),
      el("td", {}, el("pre", {}, pretty(r.key, r.key_format))),
      el("td", {}, el("pre", { class: "value" }, pretty(r.value, r.value_format))),
      el("td", {}, ...links.flatMap((l) => [l, el("br")]),
        ...others.map((h) => el("div", { class: "muted" }, `${h.name}: ${h.value}`))));
  });
  section.append(el("table", { id: "records" },
    thead("offset", "time", "key", "value", "headers"),
    el("tbody", {}, rows)));
  if (page.next_offset < page.end) {
    section.append(el("button", { id: "browse-next", onclick: () => {
      modeSelect.value = "offset"; at.value = String(page.next_offset); go();
    } }, "Next page"));
  }
  if (highlight) section.querySelector(".record.highlighted")?.scrollIntoView({ block: "center" });
}

export async function render(root, ctx) {
  const topic = ctx.params.get("topic");
  if (topic) return browser(root, ctx, topic);
  const { body } = await ctx.api("/console/api/topics", { signal: ctx.signal });
  list(root, ctx, body);
}
