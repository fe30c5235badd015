// The page: the access token, one sliding sync connection and what it shows.
//
// The sync transport (./msc3575.js) owns the wire format and the list
// models; this file keeps room data, decides what to ask for (the list's
// window follows the scroll position; the open room is a room
// subscription), and talks to the homeserver directly only to send, to page
// back through history (prev_batch) and for avatars.

import { createTransport } from "./msc3575.js";
import { createHomeserver } from "./homeserver.js";
import { createRoomList } from "./roomlist.js";
import { createRoomView } from "./roomview.js";
import { createInspector } from "./inspector.js";

const KEY_TOKEN = "syncv3.client.token";
const KEY_HS = "syncv3.client.homeserver";
const LIST = "rooms";
const LIST_SORT = ["by_recency", "by_name"];
// The senders' member events ($LAZY) give the previews their display names.
const LIST_STATE = [["m.room.avatar", ""], ["m.room.encryption", ""], ["m.room.tombstone", ""], ["m.room.member", "$LAZY"]];
const ROOM_STATE = [["*", "*"]];
const ROOM_TIMELINE = 30;
const POLL_MS = 30000;
const CLOSED_ROOM_EVENTS = 20; // events kept for a room that is not open
const ROOM_FIELDS = ["name", "avatar", "notification_count", "highlight_count", "is_dm", "joined_count",
    "invited_count", "timestamp", "heroes", "invite_state"];

const $ = (id) => document.getElementById(id);
// syncv3's base URL: the folder above /client/.
const proxyBase = new URL("..", location.href).href.replace(/\/$/, "");
let serverInfo = { server: "", version: "" };
let session = null;

// ---------------------------------------------------------------- start-up, token

async function boot() {
    try {
        const res = await fetch("server.json", { cache: "no-cache" });
        if (res.ok) serverInfo = await res.json();
    } catch {
        /* the login form says what is missing */
    }
    $("server-version").textContent = serverInfo.version ? "syncv3 " + serverInfo.version : "";
    $("hs-url").value = localStorage.getItem(KEY_HS) || serverInfo.server || "";
    $("hs-hint").textContent = serverInfo.server
        ? `syncv3 polls ${serverInfo.server}. The page sends messages and loads history there directly; change it if your browser reaches the homeserver at another URL.`
        : "syncv3 did not say which homeserver it uses; enter its URL to send messages and load history.";
    $("login-form").addEventListener("submit", (e) => {
        e.preventDefault();
        const token = $("token").value.trim();
        const hs = $("hs-url").value.trim();
        if (!token) return;
        localStorage.setItem(KEY_TOKEN, token);
        if (hs && hs !== serverInfo.server) localStorage.setItem(KEY_HS, hs);
        else localStorage.removeItem(KEY_HS);
        $("token").value = "";
        start(token, hs || serverInfo.server);
    });
    $("forget").addEventListener("click", forget);
    $("toggle-inspector").addEventListener("click", () => {
        const hidden = document.body.classList.toggle("no-inspector");
        $("toggle-inspector").setAttribute("aria-pressed", String(!hidden));
    });
    const token = localStorage.getItem(KEY_TOKEN);
    if (token) start(token, localStorage.getItem(KEY_HS) || serverInfo.server);
    else showLogin("");
}

function showLogin(error) {
    document.body.classList.remove("connected");
    $("login").hidden = false;
    $("app").hidden = true;
    $("forget").hidden = true;
    $("whoami").textContent = "";
    $("login-error").textContent = error;
    $("token").focus();
}

function forget() {
    stop();
    localStorage.removeItem(KEY_TOKEN);
    localStorage.removeItem(KEY_HS);
    $("hs-url").value = serverInfo.server || "";
    showLogin("");
}

function stop() {
    if (!session) return;
    session.alive = false;
    if (session.abort) session.abort.abort();
    session = null;
}

// ---------------------------------------------------------------- the session

function start(token, hsUrl) {
    stop();
    document.body.classList.add("connected");
    $("login").hidden = true;
    $("app").hidden = false;
    $("forget").hidden = false;
    const s = {
        alive: true, // false once stopped (token forgotten or rejected)
        abort: null, // AbortController of the request in flight
        rooms: new Map(), // room ID -> room data (see mergeRoom)
        model: null, // the ListModel of LIST
        openId: null, // the subscribed room
        unsubscribe: [], // rooms to unsubscribe from in the next request
        toDeviceSince: undefined, // to_device extension's next_batch
        me: null, // our user ID (whoami)
        txn: 0, // transaction counter for sends
    };
    s.hs = createHomeserver({ baseUrl: hsUrl, token });
    const thumb = (mxc, size) => s.hs.thumbnailUrl(mxc, size);
    s.inspector = createInspector({ root: $("inspector"), transportName: "MSC3575", path: "/_matrix/client/unstable/org.matrix.msc3575/sync" });
    s.transport = createTransport({ baseUrl: proxyBase, token, onExchange: (ex) => s.alive && s.inspector.exchange(ex) });
    s.list = createRoomList({
        container: $("room-list"),
        onOpen: (id) => openRoom(s, id),
        onRangeChange: () => requestChanged(s),
        thumbnailUrl: thumb,
    });
    s.view = createRoomView({
        root: $("room"),
        onSend: (id, text) => send(s, id, text),
        onLoadOlder: (id) => loadOlder(s, id),
        thumbnailUrl: thumb,
    });
    s.list.reset();
    s.view.clear();
    session = s;
    $("whoami").textContent = "";
    if (s.hs.usable)
        s.hs.whoami().then(
            (r) => {
                if (!s.alive) return;
                s.me = r.user_id;
                $("whoami").textContent = r.user_id + (r.device_id ? " · " + r.device_id : "");
                render(s);
            },
            () => s.alive && ($("whoami").textContent = "(whoami failed)"),
        );
    loop(s);
}

function buildRequest(s) {
    const subs = {};
    if (s.openId) subs[s.openId] = { timelineLimit: ROOM_TIMELINE, requiredState: ROOM_STATE };
    const toDevice = { enabled: true, limit: 100 };
    if (s.toDeviceSince !== undefined) toDevice.since = s.toDeviceSince;
    return {
        lists: { [LIST]: { ranges: [s.list.range], sort: LIST_SORT, timelineLimit: 1, requiredState: LIST_STATE } },
        subscriptions: subs,
        unsubscribe: [...s.unsubscribe],
        extensions: { to_device: toDevice, e2ee: { enabled: true } },
    };
}

async function loop(s) {
    let backoff = 1000;
    while (s.alive) {
        const req = buildRequest(s);
        s.abort = new AbortController();
        s.inspector.setRange(s.list.range);
        s.inspector.setStatus(s.transport.pos === null ? "connecting" : "long-polling", "live");
        try {
            const r = await s.transport.sync(req, { timeout: POLL_MS, signal: s.abort.signal });
            if (!s.alive) return;
            s.unsubscribe = s.unsubscribe.filter((id) => !req.unsubscribe.includes(id));
            apply(s, r);
            backoff = 1000;
        } catch (e) {
            if (!s.alive) return;
            if (e.name === "AbortError") continue; // the request changed: send the new one
            if (e.errcode === "M_UNKNOWN_POS") {
                // The connection ended on the server; start over with the same view.
                s.rooms.clear();
                s.model = null;
                s.inspector.setStatus("connection expired, starting over", "warn");
                render(s);
                continue;
            }
            if (e.status === 401 || e.status === 403) {
                stop();
                localStorage.removeItem(KEY_TOKEN);
                showLogin(`The token was rejected (${e.status} ${e.errcode || ""} ${e.message}). Paste a valid access token.`);
                return;
            }
            s.inspector.setStatus(`error: ${e.message}; retrying in ${backoff / 1000} s`, "bad");
            await new Promise((ok) => setTimeout(ok, backoff));
            backoff = Math.min(backoff * 2, 30000);
        }
    }
}

// The request body changed (window, subscription): end the long-poll, the loop sends anew.
function requestChanged(s) {
    s.inspector.setRange(s.list.range);
    if (s.abort) s.abort.abort();
}

// ---------------------------------------------------------------- room data

function setState(room, ev) {
    if (ev && typeof ev.type === "string" && ev.state_key !== undefined) room.state.set(ev.type + "\u0000" + ev.state_key, ev);
}

function settlePending(room, ev) {
    const txn = ev.unsigned && ev.unsigned.transaction_id;
    room.pending = room.pending.filter((p) => !(p.event.event_id && p.event.event_id === ev.event_id) && !(txn && p.txn === txn));
}

function mergeRoom(s, id, d) {
    let room = s.rooms.get(id);
    if (!room) {
        room = { id, state: new Map(), timeline: [], pending: [], prev_batch: null };
        s.rooms.set(id, room);
    }
    if (d.initial && !d.invite_state) delete room.invite_state;
    for (const k of ROOM_FIELDS) if (k in d) room[k] = d[k];
    for (const ev of d.required_state || []) setState(room, ev);
    for (const ev of d.invite_state || []) setState(room, ev);
    const tl = (d.timeline || []).filter((e) => e && typeof e === "object");
    if (d.initial) {
        // A complete room. Keep the older history we paged in when the snapshot connects to it.
        const known = new Set(room.timeline.map((e) => e.event_id));
        if (room.history && tl.length && known.has(tl[0].event_id)) {
            room.timeline.push(...tl.filter((e) => !known.has(e.event_id)));
        } else {
            room.timeline = tl;
            room.prev_batch = d.prev_batch || null;
            room.reachedStart = false;
            room.history = false;
        }
    } else if (tl.length) {
        const known = new Set(room.timeline.map((e) => e.event_id));
        room.timeline.push(...tl.filter((e) => !known.has(e.event_id)));
    }
    for (const ev of tl) {
        setState(room, ev);
        settlePending(room, ev);
    }
    if (id !== s.openId && room.timeline.length > CLOSED_ROOM_EVENTS) {
        room.timeline = room.timeline.slice(-CLOSED_ROOM_EVENTS);
        room.history = false;
    }
}

function apply(s, r) {
    for (const [id, d] of Object.entries(r.rooms)) if (d && typeof d === "object") mergeRoom(s, id, d);
    const td = r.extensions.to_device;
    if (td) {
        if (td.next_batch !== undefined) s.toDeviceSince = td.next_batch;
        s.inspector.addToDevice((td.events || []).length);
    }
    s.model = r.lists[LIST] || null;
    // Forget rooms that left the window (the server sends them again when they come back).
    const keep = new Set(s.model ? s.model.ids.values() : []);
    for (const [id, room] of s.rooms) if (!keep.has(id) && id !== s.openId && !room.pending.length) s.rooms.delete(id);
    render(s);
}

function render(s) {
    if (!s.alive) return;
    s.list.render(s.model, s.rooms, s.openId, s.me);
    $("room-count").textContent = s.model ? String(s.model.count) : "";
    s.inspector.setPos(s.transport.pos);
    if (!s.openId) return s.view.clear();
    let room = s.rooms.get(s.openId);
    if (!room) room = { id: s.openId, state: new Map(), timeline: [], pending: [], name: "Loading…" };
    s.view.show(room, { me: s.me, canSend: s.hs.usable, canPaginate: s.hs.usable });
}

// ---------------------------------------------------------------- actions

function openRoom(s, id) {
    if (s.openId === id) return;
    if (s.openId) {
        s.unsubscribe.push(s.openId);
        const old = s.rooms.get(s.openId);
        if (old) {
            old.timeline = old.timeline.slice(-CLOSED_ROOM_EVENTS);
            old.history = false;
        }
    }
    s.unsubscribe = s.unsubscribe.filter((x) => x !== id);
    s.openId = id;
    render(s);
    requestChanged(s);
}

async function send(s, roomId, text) {
    const room = s.rooms.get(roomId);
    if (!room) return;
    const txn = `syncv3client.${Date.now()}.${++s.txn}`;
    const content = { msgtype: "m.text", body: text };
    const p = { txn, failed: null, event: { type: "m.room.message", sender: s.me || "", content, origin_server_ts: Date.now(), event_id: "" } };
    room.pending.push(p);
    room.jumpToBottom = true;
    render(s);
    try {
        const r = await s.hs.send(roomId, txn, content);
        p.event.event_id = r.event_id;
        if (room.timeline.some((e) => e.event_id === r.event_id)) settlePending(room, { event_id: r.event_id });
    } catch (e) {
        p.failed = e.message;
    }
    render(s);
}

async function loadOlder(s, id) {
    const room = s.rooms.get(id);
    if (!room || !room.prev_batch || room.loadingOlder) return;
    room.loadingOlder = true;
    room.olderError = "";
    render(s);
    try {
        const r = await s.hs.messages(id, room.prev_batch, 20);
        const known = new Set(room.timeline.map((e) => e.event_id));
        const older = (r.chunk || []).filter((e) => e && !known.has(e.event_id)).reverse();
        for (const ev of r.state || []) if (!room.state.has(ev.type + "\u0000" + ev.state_key)) setState(room, ev);
        room.timeline = older.concat(room.timeline);
        room.history = true;
        room.prepended = true;
        if (r.end && (r.chunk || []).length) room.prev_batch = r.end;
        else room.reachedStart = true;
    } catch (e) {
        room.olderError = "Could not load older messages: " + e.message;
    } finally {
        room.loadingOlder = false;
    }
    render(s);
}

boot();
