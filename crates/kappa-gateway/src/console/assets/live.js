// Server-sent events over fetch(), so the token can travel in the
// Authorization header (EventSource cannot send one). Reconnects with
// backoff and resumes after the last id it saw.
import { authorization, connection } from "/console/assets/console.js";

/**
 * Follows the SSE stream at `path`, calling `on[event](data, id)` for each
 * frame (data parsed as JSON when it is JSON). Ends when `signal` aborts.
 */
export async function live(path, on, signal) {
  let lastId = null;
  let backoff = 500;
  while (!signal.aborted) {
    try {
      const url = new URL(path, location.href);
      if (lastId) url.searchParams.set("last_event_id", lastId);
      const headers = { accept: "text/event-stream" };
      const auth = authorization();
      if (auth) headers.authorization = auth;
      const r = await fetch(url, { headers, signal });
      if (!r.ok) {
        connection(r.status < 500, `HTTP ${r.status}`);
        on.failed?.(r.status);
        if (r.status >= 400 && r.status < 500) return;
      } else {
        connection(true);
        on.open?.();
        backoff = 500;
        await read(r.body, on, (id) => { lastId = id; }, signal);
        if (signal.aborted) return;
      }
    } catch (e) {
      if (signal.aborted || e.name === "AbortError") return;
      connection(false, "the live stream broke");
      on.failed?.(0);
    }
    await new Promise((done) => setTimeout(done, backoff));
    backoff = Math.min(backoff * 2, 5000);
  }
}

async function read(body, on, remember, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message", data = [], id = null;
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (data.length) {
          const text = data.join("\n");
          let parsed = text;
          try { parsed = JSON.parse(text); } catch { /* plain text frame */ }
          if (id !== null) remember(id);
          on[event]?.(parsed, id);
        }
        event = "message"; data = []; id = null;
      } else if (line.startsWith(":")) {
        // keep-alive comment
      } else {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const v = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = v;
        else if (field === "data") data.push(v);
        else if (field === "id") id = v;
      }
    }
  }
}
