// The open room: header (avatar, name, topic, members), its timeline with
// older history on demand, its state events, and the composer.

import { avatar, el, fullTime, localpart, messageText, shortTime, stateSummary } from "./view.js";

const GROUP_MS = 5 * 60 * 1000; // messages of one sender this close share a header

export function createRoomView({ root, onSend, onLoadOlder, thumbnailUrl }) {
    const empty = el("div", { class: "room-empty" },
        el("div", { class: "room-empty-inner" },
            el("h2", { text: "No room open" }),
            el("p", { text: "Pick a room on the left. Opening one subscribes to it: its full state and latest events come through sliding sync." })));
    const head = el("header", { class: "room-head" });
    const tabTimeline = el("button", { type: "button", class: "tab active", id: "tab-timeline", text: "Timeline" });
    const tabState = el("button", { type: "button", class: "tab", id: "tab-state", text: "State" });
    const olderBtn = el("button", { type: "button", class: "load-older", id: "load-older", text: "Load older messages" });
    const olderNote = el("span", { class: "timeline-note" });
    const events = el("ol", { class: "events", id: "events" });
    const timeline = el("div", { class: "timeline", id: "timeline" }, el("div", { class: "timeline-top" }, olderBtn, olderNote), events);
    const stateView = el("div", { class: "state-view", id: "state-view", hidden: true });
    const input = el("input", { id: "message", type: "text", autocomplete: "off", placeholder: "Write a message…", maxlength: "4000" });
    const sendBtn = el("button", { type: "submit", id: "send", class: "primary", text: "Send" });
    const hint = el("p", { class: "composer-hint", id: "composer-hint" });
    const composer = el("form", { class: "composer", id: "composer" }, input, sendBtn);
    const main = el("div", { class: "room-main", hidden: true }, head, el("nav", { class: "tabs" }, tabTimeline, tabState), timeline, stateView, composer, hint);
    root.replaceChildren(empty, main);

    let room = null;
    let ctx = {};
    let showState = false;

    tabTimeline.addEventListener("click", () => setTab(false));
    tabState.addEventListener("click", () => setTab(true));
    olderBtn.addEventListener("click", () => room && onLoadOlder(room.id));
    composer.addEventListener("submit", (e) => {
        e.preventDefault();
        const text = input.value.trim();
        if (!text || !room) return;
        input.value = "";
        onSend(room.id, text);
    });

    function setTab(state) {
        showState = state;
        tabTimeline.classList.toggle("active", !state);
        tabState.classList.toggle("active", state);
        timeline.hidden = state;
        stateView.hidden = !state;
        if (state && room) renderState();
    }

    function member(userId) {
        const m = room.state.get("m.room.member\u0000" + userId);
        return (m && m.content) || {};
    }

    function who(userId) {
        if (userId === ctx.me) return member(userId).displayname || "You";
        return member(userId).displayname || localpart(userId);
    }

    function renderHead() {
        const topic = room.state.get("m.room.topic\u0000");
        const enc = room.state.has("m.room.encryption\u0000");
        const members = room.joined_count ? `${room.joined_count} member${room.joined_count === 1 ? "" : "s"}` : "";
        head.replaceChildren(
            avatar(thumbnailUrl(room.avatar, 96), room.name || room.id, room.id, "lg"),
            el("div", { class: "room-head-text" },
                el("h2", { class: "room-title", id: "room-title", text: room.name || room.id }),
                el("p", { class: "room-topic", text: (topic && topic.content && topic.content.topic) || "" })),
            el("div", { class: "room-meta" },
                el("span", { text: [members, enc ? "encrypted" : ""].filter(Boolean).join(" · ") }),
                el("code", { class: "room-id", text: room.id })),
        );
        tabState.textContent = `State (${room.state.size})`;
    }

    function eventRow(ev, prev, pending) {
        const attrs = { class: "event", dataset: { eventId: ev.event_id || "", type: ev.type } };
        if (ev.state_key !== undefined) {
            return el("li", { ...attrs, class: "event event-state", title: fullTime(ev.origin_server_ts) },
                el("span", { text: stateSummary(ev, who(ev.sender)) }));
        }
        const text = messageText(ev);
        if (text === null) {
            return el("li", { ...attrs, class: "event event-other", title: fullTime(ev.origin_server_ts) },
                el("span", { text: `${who(ev.sender)} sent ${ev.type}` }));
        }
        const grouped = prev && prev.sender === ev.sender && prev.state_key === undefined && messageText(prev) !== null &&
            ev.origin_server_ts - prev.origin_server_ts < GROUP_MS;
        const cls = ["event", "event-msg"];
        if (grouped) cls.push("grouped");
        if (ev.sender === ctx.me) cls.push("own");
        if (pending) cls.push(pending.failed ? "failed" : "pending");
        const m = member(ev.sender);
        return el("li", { ...attrs, class: cls.join(" ") },
            grouped ? el("span", { class: "gutter", text: shortTime(ev.origin_server_ts), title: fullTime(ev.origin_server_ts) })
                : avatar(thumbnailUrl(m.avatar_url), who(ev.sender), ev.sender, "sm"),
            el("div", { class: "event-body" },
                grouped ? null : el("div", { class: "event-head" },
                    el("span", { class: "sender", text: who(ev.sender), title: ev.sender }),
                    el("time", { text: shortTime(ev.origin_server_ts), title: fullTime(ev.origin_server_ts) })),
                el("div", { class: "text", text }),
                pending ? el("div", { class: "event-status", text: pending.failed ? "not sent: " + pending.failed : "sending…" }) : null));
    }

    function renderTimeline() {
        const atBottom = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 48;
        const oldHeight = timeline.scrollHeight;
        const keepTop = room.prepended;
        const rows = [];
        let prev = null;
        for (const ev of room.timeline) {
            rows.push(eventRow(ev, prev, null));
            prev = ev;
        }
        for (const p of room.pending) {
            rows.push(eventRow(p.event, prev, p));
            prev = p.event;
        }
        events.replaceChildren(...rows);
        olderBtn.hidden = !room.prev_batch || room.reachedStart;
        olderBtn.disabled = !!room.loadingOlder || !ctx.canPaginate;
        olderBtn.textContent = room.loadingOlder ? "Loading…" : "Load older messages";
        olderNote.textContent = room.reachedStart ? "This is the start of the room." : room.olderError ||
            (!room.prev_batch ? "" : ctx.canPaginate ? "" : "Set the homeserver URL to load older messages.");
        if (keepTop) {
            timeline.scrollTop += timeline.scrollHeight - oldHeight;
            room.prepended = false;
        } else if (atBottom || room.jumpToBottom) {
            timeline.scrollTop = timeline.scrollHeight;
            room.jumpToBottom = false;
        }
    }

    function renderState() {
        const evs = [...room.state.values()].sort((a, b) => a.type.localeCompare(b.type) || (a.state_key || "").localeCompare(b.state_key || ""));
        stateView.replaceChildren(
            el("p", { class: "muted", text: `${evs.length} state events, as sent in required_state [["*","*"]].` }),
            ...evs.map((ev) => el("details", { class: "state-event" },
                el("summary", {}, el("code", { class: "state-type", text: ev.type }),
                    ev.state_key ? el("code", { class: "state-key", text: ev.state_key }) : null,
                    el("span", { class: "muted", text: stateSummary(ev, who(ev.sender)) })),
                el("pre", { text: JSON.stringify(ev, null, 2) }))));
    }

    return {
        get openId() {
            return room ? room.id : null;
        },
        show(r, context) {
            const changed = !room || room.id !== r.id;
            room = r;
            ctx = context;
            empty.hidden = true;
            main.hidden = false;
            if (changed) {
                setTab(false);
                room.jumpToBottom = true;
            }
            renderHead();
            renderTimeline();
            if (showState || changed) renderState();
            const invited = !!room.invite_state;
            input.disabled = sendBtn.disabled = !ctx.canSend || invited;
            hint.textContent = invited ? "You are invited to this room; this client does not join rooms."
                : ctx.canSend ? "" : "Sending needs the homeserver URL (server.json did not give an http(s) one).";
            if (changed && !input.disabled) input.focus();
        },
        clear() {
            room = null;
            empty.hidden = false;
            main.hidden = true;
        },
    };
}
