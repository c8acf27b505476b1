// The dataflow of each application as a graph (topics, nodes, stores),
// with live rates per node and lag per task.
const W = 170, H = 34, GX = 60, GY = 22;

function layout(app) {
  const items = new Map();
  const edges = [];
  const depth = new Map();
  for (const n of app.nodes) {
    const d = n.parents.length ? 1 + Math.max(...n.parents.map((p) => depth.get(p) ?? 0)) : 1;
    depth.set(n.name, d);
  }
  const column = new Map();
  const place = (id, col, item) => {
    if (items.has(id)) return items.get(id);
    const row = column.get(col) ?? 0;
    column.set(col, row + 1);
    const placed = { ...item, id, col, row };
    items.set(id, placed);
    return placed;
  };
  for (const n of app.nodes) {
    const d = depth.get(n.name);
    place(n.name, d, { type: "node", node: n, label: n.label });
    const reads = n.parents.length === 0 || n.kind.endsWith("source");
    if (n.topic && reads) {
      place(`topic:${n.topic}:in`, d - 1, { type: "topic", label: n.topic });
      edges.push([`topic:${n.topic}:in`, n.name]);
    } else if (n.topic) {
      place(`topic:${n.topic}:out`, d + 1, { type: "topic", label: n.topic });
      edges.push([n.name, `topic:${n.topic}:out`]);
    }
    for (const p of n.parents) edges.push([p, n.name]);
  }
  // Stores go in a row of their own under the graph, joined to their users.
  const maxRows = Math.max(0, ...column.values());
  let storeCol = 0;
  for (const s of app.stores) {
    const id = `store:${s.name}`;
    items.set(id, { id, type: "store", store: s, label: s.name, col: storeCol++, row: maxRows + 1 });
  }
  for (const n of app.nodes) for (const s of n.stores) edges.push([n.name, `store:${s}`]);
  return { items, edges };
}

function graph(app, ctx, rateLabels) {
  const { el } = ctx;
  const { items, edges } = layout(app);
  const x = (i) => 10 + i.col * (W + GX);
  const y = (i) => 10 + i.row * (H + GY);
  const width = Math.max(...[...items.values()].map((i) => x(i) + W)) + 10;
  const height = Math.max(...[...items.values()].map((i) => y(i) + H)) + 10;
  const svg = el("svg", { svg: true, width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `dataflow of ${app.id}` });
  const defs = el("defs", { svg: true },
    el("marker", { svg: true, id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
      el("path", { svg: true, d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" })));
  svg.append(defs);
  for (const [from, to] of edges) {
    const a = items.get(from), b = items.get(to);
    if (!a || !b) continue;
    const x1 = x(a) + W, y1 = y(a) + H / 2, x2 = b.type === "store" ? x(b) + W / 2 : x(b);
    const y2 = b.type === "store" ? y(b) : y(b) + H / 2;
    const mid = (x1 + x2) / 2;
    svg.append(el("path", { svg: true, class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
  }
  for (const i of items.values()) {
    const g = el("g", { svg: true, class: `${i.type}${i.store?.view ? " linked" : ""}`,
      transform: `translate(${x(i)},${y(i)})`,
      "data-node": i.node?.name, "data-store": i.store?.name, "data-topic": i.type === "topic" ? i.label : undefined });
    g.append(el("rect", { svg: true, width: W, height: H, rx: i.type === "topic" ? 12 : 4 }));
    const title = i.label.length > 26 ? `${i.label.slice(0, 25)}…` : i.label;
    g.append(el("text", { svg: true, x: 6, y: 14 }, title));
    g.append(el("title", { svg: true }, i.store ? `store ${i.label} (${i.store.kind})${i.store.view ? `: open view ${i.store.view}` : ""}` : i.label));
    if (i.type === "node") {
      const rate = el("text", { svg: true, class: "rate", x: 6, y: 28 }, "–");
      rateLabels.set(i.node.name, rate);
      g.append(rate);
    } else if (i.type === "store") {
      g.append(el("text", { svg: true, class: "muted", x: 6, y: 28 }, i.store.view ? `view ${i.store.view} ›` : i.store.kind));
      if (i.store.view) {
        g.addEventListener("click", () => ctx.navigate("views", { view: i.store.view }));
      }
    } else if (i.type === "topic") {
      g.addEventListener("click", () => ctx.navigate("topics", { topic: i.label }));
    }
    svg.append(g);
  }
  return el("div", { class: "graph" }, svg);
}

export async function render(root, ctx) {
  const { api, el, live, signal } = ctx;
  const { body } = await api("/console/api/topology", { signal });
  const views = new Map();
  for (const app of body.applications) {
    const rateLabels = new Map();
    const summary = el("span", { class: "muted" }, "");
    const tasks = el("tbody");
    root.append(el("section", { class: "application", dataset: { application: app.id } },
      el("h2", {}, `${app.id} `, summary),
      el("p", { class: "muted" }, `${app.partitions} tasks · reads ${app.inputs.join(", ")}`,
        app.instances.length ? ` · instances ${app.instances.map((i) => i.url).join(", ")}` : ""),
      graph(app, ctx, rateLabels),
      el("h3", {}, "Tasks"),
      el("table", { class: "tasks" },
        el("thead", {}, el("tr", {}, el("th", {}, "task"), el("th", {}, "state"), el("th", { class: "num" }, "lag"), el("th", {}, "owner"))),
        tasks)));
    views.set(app.id, { rateLabels, tasks, summary });
  }
  live("/console/api/stats/updates", {
    stats(s) {
      for (const a of s.applications) {
        const v = views.get(a.id);
        if (!v) continue;
        v.summary.textContent = `${a.processed} processed · ${a.rate ?? "–"}/s · lag ${a.lag}`;
        for (const n of a.nodes) {
          const label = v.rateLabels.get(n.name);
          if (label) label.textContent = n.rate === null ? "–" : `${n.rate}/s`;
        }
        v.tasks.replaceChildren(...a.tasks.map((t) => el("tr", { dataset: { task: t.task } },
          el("td", {}, t.task), el("td", { class: `state-${t.state}` }, t.state),
          el("td", { class: "num lag" }, t.lag ?? "–"), el("td", {}, t.owner ?? "here"))));
      }
      root.dataset.updated = s.at;
    },
  }, signal);
}
