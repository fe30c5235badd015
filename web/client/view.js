// DOM helpers: element building, avatars with an initials placeholder,
// event summaries, times and sizes. Text always goes in as text nodes.

export function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = v;
        else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else if (k === "dataset") Object.assign(e.dataset, v);
        else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
}

// Up to two letters for a placeholder: "Release planning" -> "RP", "@bob:hs" -> "B".
export function initials(name) {
    const words = (name || "?").replace(/^[@#!+]/, "").split(/[\s:_-]+/).filter(Boolean);
    const letters = words.length > 1 ? [words[0], words[1]] : [words[0] || "?"];
    return letters.map((w) => [...w][0]).join("").toUpperCase();
}

// A stable colour (one of eight) for an ID.
export function colourIndex(id) {
    let h = 0;
    for (const ch of id || "") h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 8;
}

// An avatar: the thumbnail when there is one (falling back to the
// placeholder if it fails to load), else initials on a colour.
export function avatar(url, name, id, size = "md") {
    const box = el("span", { class: `avatar avatar-${size} c${colourIndex(id)}`, "aria-hidden": "true" });
    const letters = el("span", { class: "initials", text: initials(name) });
    box.append(letters);
    if (url) {
        const img = el("img", { src: url, alt: "", loading: "lazy", decoding: "async" });
        img.addEventListener("load", () => box.classList.add("has-image"));
        img.addEventListener("error", () => img.remove());
        box.append(img);
    }
    return box;
}

export function shortTime(ts) {
    if (!ts) return "";
    const d = new Date(ts);
    const now = new Date();
    if (d.toDateString() === now.toDateString())
        return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toLocaleDateString([], { month: "short", day: "numeric" });
}

export function fullTime(ts) {
    return ts ? new Date(ts).toLocaleString() : "";
}

export function bytes(n) {
    if (n === null || n === undefined) return "";
    if (n < 1024) return n + " B";
    return (n / 1024).toFixed(n < 10240 ? 1 : 0) + " kB";
}

export function localpart(userId) {
    return (userId || "").replace(/^@/, "").split(":")[0];
}

// One line for a state event, from the point of view of its sender.
export function stateSummary(ev, who) {
    const c = ev.content || {};
    switch (ev.type) {
        case "m.room.create":
            return `${who} created the room`;
        case "m.room.member": {
            const target = c.displayname || localpart(ev.state_key);
            switch (c.membership) {
                case "join":
                    return `${target} joined`;
                case "invite":
                    return `${who} invited ${target}`;
                case "leave":
                    return ev.sender === ev.state_key ? `${target} left` : `${who} removed ${target}`;
                case "ban":
                    return `${who} banned ${target}`;
                default:
                    return `${target}: ${c.membership}`;
            }
        }
        case "m.room.name":
            return c.name ? `${who} named the room “${c.name}”` : `${who} removed the room name`;
        case "m.room.topic":
            return `${who} set the topic: ${c.topic || ""}`;
        case "m.room.avatar":
            return `${who} changed the room avatar`;
        case "m.room.encryption":
            return `${who} turned on end-to-end encryption`;
        case "m.room.join_rules":
            return `${who} set the join rule to ${c.join_rule}`;
        case "m.room.power_levels":
            return `${who} changed power levels`;
        case "m.room.history_visibility":
            return `${who} set history visibility to ${c.history_visibility}`;
        case "m.room.canonical_alias":
            return `${who} set the address to ${c.alias || "(none)"}`;
        case "m.room.tombstone":
            return `${who} replaced this room`;
        default:
            return `${who} sent ${ev.type}${ev.state_key ? " (" + ev.state_key + ")" : ""}`;
    }
}

// The text shown for a message-like event, or null if it has none.
export function messageText(ev) {
    const c = ev.content || {};
    if (ev.type === "m.room.encrypted") return "🔒 encrypted message";
    if (ev.type === "m.sticker") return "sticker: " + (c.body || "");
    if (ev.type !== "m.room.message") return null;
    if (c.msgtype === "m.emote") return "* " + (c.body || "");
    if (c.msgtype === "m.image" || c.msgtype === "m.file" || c.msgtype === "m.video" || c.msgtype === "m.audio")
        return `[${c.msgtype.slice(2)}] ${c.body || ""}`;
    if (c.body === undefined) return "(redacted)";
    return c.body;
}
