// The sync inspector: the connection's pos, what the loop is doing, and the
// raw request and response of the latest sync requests (newest first).

import { bytes, el } from "./view.js";

const KEEP = 30; // exchanges kept
const MAX_TEXT = 200_000; // characters of JSON shown per body

// JSON with two-space indentation, but arrays of numbers and strings (ranges,
// sort, required_state pairs) on one line.
function compact(v, indent = "") {
    if (Array.isArray(v)) {
        if (!v.length) return "[]";
        const flat = v.every((x) => x === null || typeof x !== "object" || (Array.isArray(x) && x.every((y) => y === null || typeof y !== "object")));
        const one = (x) => (Array.isArray(x) ? "[" + x.map((y) => JSON.stringify(y)).join(", ") + "]" : JSON.stringify(x));
        const line = flat ? "[" + v.map(one).join(", ") + "]" : null;
        if (line && line.length <= 72) return line;
        const inner = indent + "  ";
        return "[\n" + v.map((x) => inner + compact(x, inner)).join(",\n") + "\n" + indent + "]";
    }
    if (v && typeof v === "object") {
        const keys = Object.keys(v);
        if (!keys.length) return "{}";
        const inner = indent + "  ";
        return "{\n" + keys.map((k) => inner + JSON.stringify(k) + ": " + compact(v[k], inner)).join(",\n") + "\n" + indent + "}";
    }
    return JSON.stringify(v);
}

function pretty(v) {
    if (v === null || v === undefined) return "";
    const s = typeof v === "string" ? v : compact(v);
    return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) + `\n… (${s.length - MAX_TEXT} more characters)` : s;
}

function opsSummary(resp) {
    if (!resp || typeof resp !== "object" || !resp.lists) return "";
    const parts = [];
    for (const l of Object.values(resp.lists))
        for (const op of l.ops || []) if (op) parts.push(op.op + (op.range ? ` ${op.range[0]}–${op.range[1]}` : ` ${op.index}`));
    const rooms = resp.rooms ? Object.keys(resp.rooms).length : 0;
    return [parts.slice(0, 4).join(", ") + (parts.length > 4 ? ", …" : ""), rooms ? `${rooms} room${rooms === 1 ? "" : "s"}` : ""]
        .filter(Boolean).join(" · ");
}

export function createInspector({ root, transportName, path }) {
    const pos = el("code", { id: "pos", text: "–" });
    const status = el("span", { id: "sync-status", class: "pill", text: "idle" });
    const count = el("span", { id: "request-count", text: "0" });
    const toDevice = el("span", { id: "to-device-count", text: "0" });
    const range = el("code", { id: "window-range", text: "–" });
    const list = el("div", { class: "exchanges", id: "exchanges" });
    root.replaceChildren(
        el("div", { class: "inspector-head" },
            el("h2", { text: "Sync inspector" }),
            el("dl", { class: "facts" },
                el("dt", { text: "pos" }), el("dd", {}, pos),
                el("dt", { text: "state" }), el("dd", {}, status),
                el("dt", { text: "window" }), el("dd", {}, range),
                el("dt", { text: "requests" }), el("dd", {}, count),
                el("dt", { text: "to-device" }), el("dd", {}, toDevice, el("span", { class: "muted", text: " events taken" })),
                el("dt", { text: "transport" }), el("dd", { class: "wrap" }, el("span", { text: transportName + " " }), el("code", { class: "muted", text: "POST " + path })))),
        list);
    const nodes = new Map(); // exchange n -> details element
    let n = 0;

    function summary(ex) {
        const state = ex.error ? ex.error : ex.status === null ? "waiting…" : `${ex.status}`;
        const newPos = ex.response && typeof ex.response === "object" && ex.response.pos;
        return [
            el("span", { class: "ex-n", text: "#" + ex.n }),
            el("span", { class: "ex-pos", text: `pos ${ex.pos ?? "–"}${newPos ? " → " + newPos : ""}` }),
            el("span", { class: "ex-status" + (ex.error || (ex.status && ex.status >= 400) ? " bad" : ex.status ? " ok" : ""), text: state }),
            el("span", { class: "ex-meta muted", text: [ex.ms !== null ? (ex.ms / 1000).toFixed(2) + " s" : "", bytes(ex.bytes)].filter(Boolean).join(" · ") }),
            el("span", { class: "ex-ops muted", text: opsSummary(ex.response) }),
        ];
    }

    function body(ex) {
        return [
            el("div", { class: "ex-label", text: `Request  ${ex.method} ${ex.url.replace(/^https?:\/\/[^/]+/, "")}` }),
            el("pre", { class: "ex-request", text: pretty(ex.request) }),
            el("div", { class: "ex-label", text: "Response" + (ex.status ? ` ${ex.status}` : "") }),
            el("pre", { class: "ex-response", text: ex.status === null && !ex.error ? "(long-polling…)" : pretty(ex.response ?? ex.error) }),
        ];
    }

    return {
        exchange(ex) {
            let d = nodes.get(ex.n);
            if (!d) {
                n++;
                count.textContent = String(n);
                d = el("details", { class: "exchange", dataset: { n: ex.n } }, el("summary"), el("div", { class: "ex-body" }));
                // The newest is open; the one before closes unless the reader clicked it.
                const prevTop = list.firstElementChild;
                if (prevTop && !prevTop.dataset.pinned) prevTop.open = false;
                d.open = true;
                d.querySelector("summary").addEventListener("click", () => (d.dataset.pinned = "1"));
                list.prepend(d);
                nodes.set(ex.n, d);
                while (list.children.length > KEEP) {
                    const last = list.lastElementChild;
                    nodes.delete(Number(last.dataset.n));
                    last.remove();
                }
            }
            d.querySelector("summary").replaceChildren(...summary(ex));
            d.querySelector(".ex-body").replaceChildren(...body(ex));
        },
        setPos(p) {
            pos.textContent = p ?? "–";
        },
        setStatus(text, kind = "") {
            status.textContent = text;
            status.className = "pill " + kind;
        },
        setRange(r) {
            range.textContent = r ? `[${r[0]}, ${r[1]}]` : "–";
        },
        addToDevice(k) {
            toDevice.textContent = String(Number(toDevice.textContent) + k);
        },
        reset() {
            list.replaceChildren();
            nodes.clear();
            n = 0;
            count.textContent = "0";
            toDevice.textContent = "0";
            pos.textContent = "–";
        },
    };
}
