// The sync transport: everything that is particular to one sliding sync
// dialect lives in a module like this one, so the page can move to another
// (MSC4186's simplified sliding sync: another path, no list ops, rooms
// ordered by the client) by swapping the module. The page talks to it in
// its own terms:
//
//   const t = createTransport({ baseUrl, token, onExchange });
//   const r = await t.sync(request, { timeout, signal });
//
// request: { lists: { name: { ranges, sort, timelineLimit, requiredState, filters } },
//            subscriptions: { roomId: { timelineLimit, requiredState } },
//            unsubscribe: [roomId], extensions: { name: {...} } }
// result:  { pos, lists: { name: ListModel }, rooms: { roomId: room data },
//            extensions: {...} }
// Errors are SyncError (status, errcode); after M_UNKNOWN_POS the transport
// has already started over (no pos, empty lists), the page should too.
// onExchange(ex) is called when a request starts and again when it ends,
// with the same object: { n, method, url, pos, timeout, request, status,
// response, error, startedAt, ms, bytes }.

import { ListModel } from "./listmodel.js";

export const NAME = "MSC3575";
export const PATH = "/_matrix/client/unstable/org.matrix.msc3575/sync";

export class SyncError extends Error {
    constructor(status, errcode, message) {
        super(message || errcode || "HTTP " + status);
        this.name = "SyncError";
        this.status = status; // HTTP status, 0 when the request did not complete
        this.errcode = errcode || null; // Matrix errcode of the body, if any
    }
}

// The page's request in MSC3575's wire format.
function wireBody(req) {
    const body = { lists: {} };
    for (const [name, l] of Object.entries(req.lists || {})) {
        const w = { ranges: l.ranges };
        if (l.sort) w.sort = l.sort;
        if (l.timelineLimit !== undefined) w.timeline_limit = l.timelineLimit;
        if (l.requiredState) w.required_state = l.requiredState;
        if (l.filters) w.filters = l.filters;
        body.lists[name] = w;
    }
    const subs = Object.entries(req.subscriptions || {});
    if (subs.length) {
        body.room_subscriptions = {};
        for (const [id, s] of subs)
            body.room_subscriptions[id] = { timeline_limit: s.timelineLimit, required_state: s.requiredState };
    }
    if (req.unsubscribe && req.unsubscribe.length) body.unsubscribe_rooms = req.unsubscribe;
    if (req.extensions) body.extensions = req.extensions;
    return body;
}

export function createTransport({ baseUrl, token, onExchange = () => {}, fetchFn = (...a) => fetch(...a) }) {
    let pos = null;
    let seq = 0;
    const lists = new Map(); // name -> ListModel

    function reset() {
        pos = null;
        lists.clear();
    }

    async function sync(req, { timeout = 30000, signal } = {}) {
        const body = wireBody(req);
        const q = new URLSearchParams();
        if (pos !== null) q.set("pos", pos);
        q.set("timeout", String(timeout));
        const url = baseUrl + PATH + "?" + q;
        const ex = {
            n: ++seq, method: "POST", url, pos, timeout, request: body, status: null, response: null,
            error: null, startedAt: Date.now(), ms: null, bytes: null,
        };
        onExchange(ex);
        const finish = () => {
            ex.ms = Date.now() - ex.startedAt;
            onExchange(ex);
        };
        let res, text;
        try {
            res = await fetchFn(url, {
                method: "POST",
                headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
                body: JSON.stringify(body),
                signal,
            });
            text = await res.text();
        } catch (e) {
            ex.error = e.name === "AbortError" ? "aborted (the request changed)" : String(e.message || e);
            finish();
            throw e.name === "AbortError" ? e : new SyncError(0, null, ex.error);
        }
        ex.status = res.status;
        ex.bytes = text.length;
        let json = null;
        try {
            json = JSON.parse(text);
        } catch {
            json = null;
        }
        ex.response = json ?? text;
        finish();
        if (!res.ok || !json || typeof json !== "object") {
            const err = new SyncError(res.status, json && json.errcode, json && json.error);
            if (err.errcode === "M_UNKNOWN_POS") reset();
            throw err;
        }
        for (const [name, l] of Object.entries(json.lists || {})) {
            let m = lists.get(name);
            if (!m) lists.set(name, (m = new ListModel()));
            m.applyOps(l.ops);
            m.setCount(l.count || 0);
        }
        for (const name of [...lists.keys()]) if (!(name in (json.lists || {}))) lists.delete(name);
        pos = json.pos ?? pos;
        return {
            pos,
            lists: Object.fromEntries(lists),
            rooms: json.rooms || {},
            extensions: json.extensions || {},
        };
    }

    return {
        name: NAME,
        path: PATH,
        get pos() {
            return pos;
        },
        reset,
        sync,
    };
}
