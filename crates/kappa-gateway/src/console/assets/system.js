// The system on this log, as the article draws it: services (processes)
// as boxes, the topics between them, and each reader's lag. Services
// announce themselves in the log (kappa-services), so every instance's
// console shows the same picture; Kafka consumer groups that announce
// nothing (a stock client in another language) are drawn from their
// committed offsets.
const W = 320, TW = 160, GX = 110, GY = 18, LINE = 14;

function boxes(body) {
  const services = body.services.map((s) => ({
    id: `service:${s.service}/${s.instance}`, kind: "service", title: s.service,
    lines: [`${s.instance} · ${s.host}:${s.pid}`, s.http ? s.http : null].filter(Boolean),
    state: s.state, age: s.age_ms, reads: s.reads, writes: s.writes,
  }));
  const groups = body.groups.map((g) => ({
    id: `group:${g.group}`, kind: "group", title: g.group, lines: ["Kafka consumer group"],
    state: "group", reads: g.reads, writes: [],
  }));
  return [...services, ...groups];
}

function height(b) {
  return 22 + LINE * (b.lines.length + b.reads.length) + 6;
}

function layout(body) {
  const all = boxes(body);
  const topics = new Map(body.topics.map((t) => [t.name, { ...t, id: `topic:${t.name}` }]));
  for (const b of all) {
    for (const t of [...b.writes, ...b.reads.map((r) => r.topic)]) {
      if (!topics.has(t)) topics.set(t, { name: t, id: `topic:${t}`, records: null });
    }
  }
  // Writers left of the topics, readers that write nothing right of them.
  const left = all.filter((b) => b.writes.length > 0);
  const right = all.filter((b) => b.writes.length === 0);
  const place = (list, x) => {
    let y = 10;
    for (const b of list) {
      Object.assign(b, { x, y, w: W, h: height(b) });
      y += b.h + GY;
    }
    return y;
  };
  const hl = place(left, 10);
  const hr = place(right, 10 + W + GX + TW + GX);
  let y = 10;
  for (const t of topics.values()) {
    Object.assign(t, { x: 10 + W + GX, y, w: TW, h: 36 });
    y += 36 + GY;
  }
  return { all, topics, width: 20 + 2 * W + 2 * GX + TW, height: Math.max(hl, hr, y) + 10 };
}

function curve(x1, y1, x2, y2) {
  const mid = (x1 + x2) / 2;
  return `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
}

function draw(body, ctx) {
  const { el } = ctx;
  const { all, topics, width, height: h } = layout(body);
  const svg = el("svg", { svg: true, width, height: h, viewBox: `0 0 ${width} ${h}`, role: "img",
    "aria-label": "services and the topics between them" });
  svg.append(el("defs", { svg: true },
    el("marker", { svg: true, id: "system-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
      el("path", { svg: true, d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" }))));
  for (const b of all) {
    const onLeft = b.writes.length > 0;
    for (const t of b.writes) {
      const tp = topics.get(t);
      svg.append(el("path", { svg: true, class: "edge write", d: curve(b.x + b.w, b.y + 14, tp.x, tp.y + tp.h / 2),
        dataset: { from: b.id, to: tp.id } }));
    }
    for (const [i, r] of b.reads.entries()) {
      const tp = topics.get(r.topic);
      const ly = b.y + 22 + LINE * (b.lines.length + i) - 4;
      const d = onLeft ? curve(tp.x, tp.y + tp.h / 2 + 6, b.x + b.w, ly) : curve(tp.x + tp.w, tp.y + tp.h / 2, b.x, ly);
      svg.append(el("path", { svg: true, class: `edge read${r.lag > 0 ? " behind" : ""}`, d, dataset: { from: tp.id, to: b.id } }));
    }
  }
  for (const t of topics.values()) {
    const g = el("g", { svg: true, class: "topic", transform: `translate(${t.x},${t.y})`, dataset: { topic: t.name } });
    g.append(el("rect", { svg: true, width: t.w, height: t.h, rx: 12 }));
    g.append(el("text", { svg: true, x: 8, y: 15 }, t.name));
    g.append(el("text", { svg: true, class: "muted", x: 8, y: 29 }, t.records === null ? "" : `${t.records} records`));
    g.addEventListener("click", () => ctx.navigate("topics", { topic: t.name }));
    svg.append(g);
  }
  for (const b of all) {
    const g = el("g", { svg: true, class: `box ${b.kind} state-${b.state}`, transform: `translate(${b.x},${b.y})`,
      dataset: { box: b.id, state: b.state } });
    g.append(el("rect", { svg: true, width: b.w, height: b.h, rx: 4 }));
    const badge = b.kind === "group" ? "" : b.state === "silent" ? ` · silent ${Math.round(b.age / 1000)} s` : ` · ${b.state}`;
    g.append(el("text", { svg: true, class: "title", x: 8, y: 15 }, b.title, el("tspan", { svg: true, class: "muted" }, badge)));
    let y = 15 + LINE;
    for (const l of b.lines) {
      g.append(el("text", { svg: true, class: "muted", x: 8, y }, l));
      y += LINE;
    }
    for (const r of b.reads) {
      g.append(el("text", { svg: true, class: `lag${r.lag > 0 ? " behind" : ""}`, x: 8, y, dataset: { reader: r.reader, topic: r.topic, lag: r.lag } },
        `reads ${r.topic} as ${r.reader} · lag ${r.lag}`));
      y += LINE;
    }
    svg.append(g);
  }
  return el("div", { class: "graph system" }, svg);
}

export async function render(root, ctx) {
  const { api, el, signal } = ctx;
  const section = el("section", {}, el("h2", {}, "Services on this log"),
    el("p", { class: "muted" }, "Each box is a process; arrows run from writers to topics and from topics to readers. Refreshed every 2 s."));
  const holder = el("div");
  section.append(holder);
  root.append(section);
  for (;;) {
    try {
      const { body } = await api("/console/api/system", { signal });
      holder.replaceChildren(draw(body, ctx));
      root.dataset.updated = String(Date.now());
    } catch (e) {
      if (e.name === "AbortError" || signal.aborted) return;
      holder.replaceChildren(ctx.failure(e));
    }
    await new Promise((resolve) => {
      const t = setTimeout(resolve, 2000);
      signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
    });
    if (signal.aborted) return;
  }
}
