// The room list: a virtual list as tall as the whole list (`count` rows),
// drawing only the rows in view. Rows the sliding window does not cover yet
// are grey placeholders until the server sends them. Scrolling asks for a
// new window (onRangeChange) once the view moves near its edge.

import { avatar, el, messageText, shortTime, localpart } from "./view.js";

const ROW = 64; // px, keep in step with .room-row's height in style.css
const PAD = 5; // rows asked for beyond each edge of the view
const STEP = 5; // window starts are multiples of this, so small scrolls ask nothing

export function createRoomList({ container, onOpen, onRangeChange, thumbnailUrl }) {
    const spacer = el("div", { class: "room-list-spacer" });
    container.replaceChildren(spacer);
    let model = null;
    let rooms = new Map();
    let openId = null;
    let me = null; // our user ID, when known
    let range = [0, initialEnd()];
    let rangeTimer = null;
    let frame = 0;

    function initialEnd() {
        const visible = Math.ceil((container.clientHeight || 800) / ROW) + 1;
        return visible + 2 * PAD + STEP;
    }

    function wanted() {
        const visible = Math.ceil(container.clientHeight / ROW) + 1;
        const first = Math.floor(container.scrollTop / ROW);
        const start = Math.max(0, Math.floor((first - PAD) / STEP) * STEP);
        return [start, start + visible + 2 * PAD + STEP];
    }

    function checkRange() {
        const w = wanted();
        if (w[0] !== range[0] || w[1] !== range[1]) {
            range = w;
            onRangeChange(range);
        }
    }

    container.addEventListener(
        "scroll",
        () => {
            if (!frame) frame = requestAnimationFrame(draw);
            clearTimeout(rangeTimer);
            rangeTimer = setTimeout(checkRange, 80);
        },
        { passive: true },
    );
    window.addEventListener("resize", () => {
        draw();
        checkRange();
    });

    function preview(room) {
        if (room.invite_state) return "Invitation";
        const ev = [...(room.timeline || [])].reverse().find((e) => messageText(e) !== null);
        if (!ev) return "";
        const who = ev.sender === me ? "You" : senderName(room, ev.sender);
        return `${who}: ${messageText(ev)}`;
    }

    function senderName(room, userId) {
        const m = room.state && room.state.get("m.room.member\u0000" + userId);
        return (m && m.content && m.content.displayname) || localpart(userId);
    }

    function row(index, id) {
        const top = index * ROW + "px";
        const room = id && rooms.get(id);
        if (!room) {
            const r = el("div", { class: "room-row placeholder", dataset: { index } },
                el("span", { class: "avatar avatar-md skeleton" }),
                el("span", { class: "room-text" }, el("span", { class: "bar bar-name" }), el("span", { class: "bar bar-line" })));
            r.style.top = top;
            return r;
        }
        const name = room.name || id;
        const notif = room.notification_count || 0;
        const hl = room.highlight_count || 0;
        const badge = room.invite_state
            ? el("span", { class: "badge badge-invite", text: "invite" })
            : notif || hl
              ? el("span", { class: "badge" + (hl ? " badge-highlight" : ""), title: `${notif} notifications, ${hl} highlights`, text: String(hl || notif) })
              : null;
        const r = el(
            "button",
            {
                type: "button",
                class: "room-row" + (id === openId ? " selected" : "") + (notif || hl ? " unread" : ""),
                dataset: { index, roomId: id },
                title: id,
                onclick: () => onOpen(id),
            },
            avatar(thumbnailUrl(room.avatar), name, id),
            el(
                "span",
                { class: "room-text" },
                el("span", { class: "room-line" },
                    el("span", { class: "room-name", text: name }),
                    el("span", { class: "room-time", text: shortTime(room.timestamp) })),
                el("span", { class: "room-line" },
                    el("span", { class: "room-preview", text: preview(room) }),
                    badge),
            ),
        );
        r.style.top = top;
        return r;
    }

    function draw() {
        frame = 0;
        const count = model ? model.count : 0;
        spacer.style.height = count * ROW + "px";
        const first = Math.max(0, Math.floor(container.scrollTop / ROW) - 2);
        const last = Math.min(count - 1, Math.ceil((container.scrollTop + container.clientHeight) / ROW) + 2);
        const rows = [];
        for (let i = first; i <= last; i++) rows.push(row(i, model.get(i)));
        spacer.replaceChildren(...rows);
    }

    return {
        get range() {
            return range;
        },
        // Starts over (a new connection): the first window again, at the top.
        reset() {
            container.scrollTop = 0;
            range = [0, initialEnd()];
            model = null;
            draw();
        },
        render(listModel, roomMap, open, userId) {
            model = listModel;
            rooms = roomMap;
            openId = open;
            me = userId;
            draw();
        },
    };
}
