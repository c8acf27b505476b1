// The card-limits page of the console: each card's limit and how much of
// it is used (settled and pending), recent decisions live, and threshold
// notifications with their delivery status.

const CARDS_SHOWN = 25;
const REFRESH_MS = 3000;

function money(cents) {
  return cents === null || cents === undefined ? "–" : (cents / 100).toFixed(2);
}

function cardRow(el, b) {
  const bar = el("div", { class: `bar${b.limit !== null && b.spent > b.limit ? " over" : ""}`,
    title: `settled ${money(b.settled)} + pending ${money(b.pending)} of ${money(b.limit)}` });
  if (b.limit) {
    const settled = el("div", { class: "settled" });
    const pending = el("div", { class: "pending" });
    settled.style.width = `${Math.min(100, (100 * b.settled) / b.limit)}%`;
    pending.style.width = `${Math.max(0, Math.min(100 - (100 * b.settled) / b.limit, (100 * b.pending) / b.limit))}%`;
    bar.append(settled, pending);
  }
  const used = b.limit ? `${Math.round((100 * b.spent) / b.limit)}%` : "no limit";
  return el("tr", { dataset: { card: b.card } },
    el("td", {}, el("a", { href: `#/views?view=cards&key=${encodeURIComponent(b.card)}` }, b.card)),
    el("td", { class: "num limit" }, money(b.limit)),
    el("td", {}, bar),
    el("td", { class: "num utilization" }, used),
    el("td", { class: "num settled" }, money(b.settled)),
    el("td", { class: "num pending" }, money(b.pending)),
    el("td", { class: "num available" }, money(b.available)),
    el("td", { class: "muted" }, b.position));
}

async function cards(ctx, tbody, note) {
  const { api, el, signal } = ctx;
  const { body } = await api(`/views/cards?limit=${CARDS_SHOWN}`, { signal });
  const balances = await Promise.all(body.entries.map((e) =>
    api(`/cards/${encodeURIComponent(e.key)}`, { signal }).then((r) => r.body)));
  tbody.replaceChildren(...balances.map((b) => cardRow(el, b)));
  note.textContent = `${balances.length} cards${body.next_after !== undefined ? ` (first ${CARDS_SHOWN})` : ""} · refreshed ${new Date().toLocaleTimeString()}`;
}

/** The last `n` events with `action`, newest first. */
async function lastEvents(ctx, action, n) {
  const first = await ctx.api(`/events?action=${action}&limit=1`, { signal: ctx.signal });
  const offset = Math.max(0, first.body.total - n);
  const page = await ctx.api(`/events?action=${action}&offset=${offset}&limit=${n}`, { signal: ctx.signal });
  return page.body.items.reverse();
}

async function notifications(ctx, tbody) {
  const { el } = ctx;
  const [reached, delivered, failed] = await Promise.all([
    lastEvents(ctx, "limit-threshold-reached", 20),
    lastEvents(ctx, "notification-delivered", 200),
    lastEvents(ctx, "notification-failed", 200),
  ]);
  const outcome = new Map();
  for (const e of delivered) outcome.set(e.parent, ["delivered", e]);
  for (const e of failed) outcome.set(e.parent, ["failed", e]);
  tbody.replaceChildren(...reached.map((n) => {
    const [status, e] = outcome.get(n.id) ?? ["pending", null];
    return el("tr", { class: "notification", dataset: { id: n.id, status } },
      el("td", {}, new Date(n.timestamp).toISOString()),
      el("td", {}, n.data.card),
      el("td", { class: "num" }, `${n.data.threshold}%`),
      el("td", { class: "num" }, `${money(n.data.spent)} / ${money(n.data.limit)}`),
      el("td", { class: `status-${status}` }, status, e?.data?.reason ? ` (${e.data.reason})` : ""));
  }));
}

export async function render(root, ctx) {
  const { el, thead, live, batcher, signal } = ctx;
  const cardBody = el("tbody");
  const cardNote = el("p", { class: "muted", id: "cards-note" });
  root.append(el("section", {}, el("h2", {}, "Cards"), cardNote,
    el("table", { id: "cards-table" },
      thead("card", "limit", "used (settled | pending)", "", "settled", "pending", "available", "position"),
      cardBody)));
  const decisions = el("div", { class: "stream", id: "decisions" });
  const decisionNote = el("span", { class: "muted", id: "decisions-count" }, "waiting for decisions…");
  const notificationBody = el("tbody");
  root.append(el("div", { class: "columns" },
    el("section", {}, el("h2", {}, "Recent decisions "), decisionNote, decisions),
    el("section", {}, el("h2", {}, "Threshold notifications"),
      el("table", { id: "notifications" },
        thead("time", "card", "threshold", "spent / limit", "delivery"),
        notificationBody))));
  let seen = 0, skipped = 0;
  const show = batcher((items) => {
    decisions.prepend(...items.slice(-50).reverse().map((e) => el("div", { class: "item decision", dataset: { action: e.action } },
      el("span", { class: "action" }, e.action.replace("authorization-", "")),
      `${e.data.card} ${money(e.data.amount)} at ${e.data.merchant ?? ""}`, e.data.reason ? ` (${e.data.reason})` : "")));
    while (decisions.childElementCount > 50) decisions.lastElementChild.remove();
    decisionNote.textContent = `${seen} shown${skipped ? `, ${skipped} events skipped by sampling` : ""}`;
  });
  live("/events/updates?max_rate=100", {
    event(e) {
      if (e.action === "authorization-approved" || e.action === "authorization-declined") { seen++; show(e); }
    },
    sampled(s) { skipped += s.skipped; },
  }, signal);
  const refresh = async () => {
    try {
      await Promise.all([cards(ctx, cardBody, cardNote), notifications(ctx, notificationBody)]);
      root.dataset.refreshed = String(Date.now());
    } catch (e) {
      if (signal.aborted) return;
      cardNote.replaceChildren(ctx.failure(e));
    }
    if (!signal.aborted) setTimeout(refresh, REFRESH_MS);
  };
  await refresh();
}
