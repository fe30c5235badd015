// The few client-server API calls the page makes to the homeserver itself
// (not through syncv3): who the token belongs to, sending a message, older
// history, and avatar thumbnails.

export class HsError extends Error {
    constructor(status, errcode, message) {
        super(message || errcode || "HTTP " + status);
        this.name = "HsError";
        this.status = status; // HTTP status, 0 when the request did not complete
        this.errcode = errcode || null; // Matrix errcode, if any
    }
}

export function createHomeserver({ baseUrl, token, fetchFn = (...a) => fetch(...a) }) {
    const base = (baseUrl || "").replace(/\/+$/, "");

    async function call(method, path, body) {
        let res;
        try {
            res = await fetchFn(base + path, {
                method,
                headers: {
                    Authorization: "Bearer " + token,
                    ...(body === undefined ? {} : { "Content-Type": "application/json" }),
                },
                body: body === undefined ? undefined : JSON.stringify(body),
            });
        } catch (e) {
            throw new HsError(0, null, "cannot reach the homeserver at " + base + ": " + (e.message || e));
        }
        let json = null;
        try {
            json = await res.json();
        } catch {
            json = null;
        }
        if (!res.ok) throw new HsError(res.status, json && json.errcode, json && json.error);
        return json || {};
    }

    const room = (id) => "/_matrix/client/v3/rooms/" + encodeURIComponent(id);

    return {
        baseUrl: base,
        usable: /^https?:\/\//.test(base),
        whoami: () => call("GET", "/_matrix/client/v3/account/whoami"),
        // -> { event_id }
        send: (roomId, txnId, content, type = "m.room.message") =>
            call("PUT", room(roomId) + "/send/" + encodeURIComponent(type) + "/" + encodeURIComponent(txnId), content),
        // -> { chunk (newest first), start, end?, state? }
        messages: (roomId, from, limit = 20) => {
            const q = new URLSearchParams({ dir: "b", from, limit: String(limit) });
            q.set("filter", JSON.stringify({ lazy_load_members: true }));
            return call("GET", room(roomId) + "/messages?" + q);
        },
        // An mxc:// URI as an http(s) thumbnail URL, or null when it is not one.
        thumbnailUrl: (mxc, size = 64) => {
            const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(mxc || "");
            if (!m || !/^https?:\/\//.test(base)) return null;
            const q = new URLSearchParams({ width: String(size), height: String(size), method: "crop" });
            return base + "/_matrix/media/v3/thumbnail/" + encodeURIComponent(m[1]) + "/" + encodeURIComponent(m[2]) + "?" + q;
        },
    };
}
