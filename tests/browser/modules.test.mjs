// The web client's browser-free modules under node: the list model (MSC3575 ops, with the
// worked examples of the ops algorithm) and the MSC3575 transport (wire format, pos, errors)
// against a fake fetch.

import { test } from "node:test";
import assert from "node:assert/strict";

import { ListModel } from "../../web/client/listmodel.js";
import { createTransport, SyncError, PATH } from "../../web/client/msc3575.js";

// A model holding ids at the given start index ("." = unknown).
function model(count, start, ids) {
    const m = new ListModel();
    m.count = count;
    ids.forEach((id, k) => id !== "." && m.ids.set(start + k, id));
    return m;
}

const view = (m) => Object.fromEntries(m.entries());

test("list model: SYNC, INVALIDATE, count", () => {
    const m = new ListModel();
    m.applyOps([{ op: "SYNC", range: [0, 3], room_ids: ["a", "b", "c"] }]);
    m.setCount(3);
    assert.deepEqual(view(m), { 0: "a", 1: "b", 2: "c" });
    m.applyOps([{ op: "INVALIDATE", range: [0, 1] }, { op: "SYNC", range: [5, 6], room_ids: ["f", "g"] }]);
    m.setCount(10);
    assert.deepEqual(view(m), { 2: "c", 5: "f", 6: "g" });
    m.setCount(6);
    assert.deepEqual(view(m), { 2: "c", 5: "f" });
    assert.equal(m.indexOf("f"), 5);
    assert.equal(m.indexOf("zz"), -1);
    m.applyOps([null, { op: "NOPE" }, { op: "SYNC" }, { op: "DELETE" }]);
    assert.deepEqual(view(m), { 2: "c", 5: "f" });
});

// [before (start, ids), ops, count after, after (start, ids)]
const examples = {
    "[] -> [a]": [[0, []], [{ op: "DELETE", index: 0 }, { op: "INSERT", index: 0, room_id: "a" }], 1, [0, ["a"]]],
    "[a] -> []": [[0, ["a"]], [{ op: "DELETE", index: 0 }], 0, [0, []]],
    "d bumped": [[0, ["a", "b", "c", "d"]], [{ op: "DELETE", index: 3 }, { op: "INSERT", index: 0, room_id: "d" }], 4,
        [0, ["d", "a", "b", "c"]]],
    "add bc (DELETE of a slot past the end)": [[0, ["a", "b", "c", "d"]],
        [{ op: "DELETE", index: 4 }, { op: "INSERT", index: 2, room_id: "bc" }], 5, [0, ["a", "b", "bc", "c", "d"]]],
    "add d, sorts last": [[0, ["a", "b", "c"]], [{ op: "DELETE", index: 3 }, { op: "INSERT", index: 3, room_id: "d" }], 4,
        [0, ["a", "b", "c", "d"]]],
    "remove b": [[0, ["a", "b", "c", "d", "e"]], [{ op: "DELETE", index: 1 }], 4, [0, ["a", "c", "d", "e"]]],
    "range [0,2], f to the top": [[0, ["a", "b", "c"]], [{ op: "DELETE", index: 2 }, { op: "INSERT", index: 0, room_id: "f" }], 6,
        [0, ["f", "a", "b"]]],
    "range [0,2], a to index 4": [[0, ["a", "b", "c"]], [{ op: "DELETE", index: 0 }, { op: "INSERT", index: 2, room_id: "d" }], 6,
        [0, ["b", "c", "d"]]],
    "range [1,3], remove a": [[1, ["b", "c", "d"]], [{ op: "DELETE", index: 1 }, { op: "INSERT", index: 3, room_id: "e" }], 5,
        [1, ["c", "d", "e"]]],
    "ranges [0,2],[5,7], g to index 1": [[0, ["a", "b", "c", ".", ".", "f", "g", "h"]],
        [{ op: "DELETE", index: 6 }, { op: "INSERT", index: 5, room_id: "e" }, { op: "DELETE", index: 2 }, { op: "INSERT", index: 1, room_id: "g" }],
        9, [0, ["a", "g", "b", ".", ".", "e", "f", "h"]]],
    "ranges [1,3],[5,7], i to the top": [[1, ["b", "c", "d", ".", "f", "g", "h"]],
        [{ op: "DELETE", index: 3 }, { op: "INSERT", index: 1, room_id: "a" }, { op: "DELETE", index: 7 }, { op: "INSERT", index: 5, room_id: "e" }],
        9, [1, ["a", "b", "c", ".", "e", "f", "g"]]],
    "two invites removed": [[0, ["x", "y", "r"]], [{ op: "DELETE", index: 1 }, { op: "DELETE", index: 0 }], 1, [0, ["r"]]],
    "INSERT without DELETE makes room": [[0, ["a", "b"]], [{ op: "INSERT", index: 0, room_id: "z" }], 3, [0, ["z", "a", "b"]]],
};

for (const [name, [[s0, ids0], ops, count, [s1, ids1]]] of Object.entries(examples)) {
    test("list model: " + name, () => {
        const m = model(ids0.length, s0, ids0);
        m.applyOps(ops);
        m.setCount(count);
        assert.deepEqual(view(m), view(model(count, s1, ids1)));
        assert.equal(m.count, count);
    });
}

// A fetch answering from a queue of [status, body] and recording the requests.
function fakeFetch(answers) {
    const calls = [];
    const fn = async (url, opts) => {
        calls.push({ url: new URL(url), opts, body: JSON.parse(opts.body) });
        const [status, body] = answers.shift();
        return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
    };
    return { fn, calls };
}

test("transport: the wire format, pos, list ops and exchanges", async () => {
    const { fn, calls } = fakeFetch([
        [200, { pos: "1", lists: { rooms: { count: 3, ops: [{ op: "SYNC", range: [0, 1], room_ids: ["!a", "!b"] }] } }, rooms: { "!a": { name: "A" } } }],
        [200, { pos: "2", lists: { rooms: { count: 3, ops: [{ op: "DELETE", index: 1 }, { op: "INSERT", index: 0, room_id: "!c" }] } }, extensions: { to_device: { next_batch: "t1" } } }],
    ]);
    const seen = [];
    const t = createTransport({ baseUrl: "http://syncv3.test", token: "tok", fetchFn: fn, onExchange: (ex) => seen.push({ ...ex }) });
    const req = {
        lists: { rooms: { ranges: [[0, 1]], sort: ["by_recency"], timelineLimit: 1, requiredState: [["m.room.avatar", ""]] } },
        subscriptions: { "!a": { timelineLimit: 30, requiredState: [["*", "*"]] } },
        unsubscribe: ["!old"],
        extensions: { to_device: { enabled: true } },
    };
    const r1 = await t.sync(req, { timeout: 1000 });
    assert.equal(calls[0].url.pathname, PATH);
    assert.equal(calls[0].url.searchParams.get("pos"), null);
    assert.equal(calls[0].url.searchParams.get("timeout"), "1000");
    assert.equal(calls[0].opts.headers.Authorization, "Bearer tok");
    assert.deepEqual(calls[0].body, {
        lists: { rooms: { ranges: [[0, 1]], sort: ["by_recency"], timeline_limit: 1, required_state: [["m.room.avatar", ""]] } },
        room_subscriptions: { "!a": { timeline_limit: 30, required_state: [["*", "*"]] } },
        unsubscribe_rooms: ["!old"],
        extensions: { to_device: { enabled: true } },
    });
    assert.equal(r1.pos, "1");
    assert.deepEqual(Object.fromEntries(r1.lists.rooms.entries()), { 0: "!a", 1: "!b" });
    assert.equal(r1.rooms["!a"].name, "A");
    const r2 = await t.sync({ lists: req.lists }, { timeout: 1000 });
    assert.equal(calls[1].url.searchParams.get("pos"), "1");
    assert.equal(calls[1].body.room_subscriptions, undefined);
    assert.deepEqual(Object.fromEntries(r2.lists.rooms.entries()), { 0: "!c", 1: "!a" });
    assert.equal(r2.extensions.to_device.next_batch, "t1");
    assert.equal(t.pos, "2");
    // Each exchange is reported when it starts and when it ends.
    assert.deepEqual(seen.map((e) => [e.n, e.status]), [[1, null], [1, 200], [2, null], [2, 200]]);
    assert.equal(seen[1].response.pos, "1");
});

test("transport: M_UNKNOWN_POS starts over; other errors are SyncErrors", async () => {
    const { fn, calls } = fakeFetch([
        [200, { pos: "5", lists: { rooms: { count: 1, ops: [{ op: "SYNC", range: [0, 0], room_ids: ["!a"] }] } } }],
        [400, { errcode: "M_UNKNOWN_POS", error: "Unknown pos" }],
        [200, { pos: "1", lists: { rooms: { count: 0 } } }],
        [401, { errcode: "M_UNKNOWN_TOKEN", error: "Invalid token" }],
    ]);
    const t = createTransport({ baseUrl: "http://syncv3.test", token: "tok", fetchFn: fn });
    const req = { lists: { rooms: { ranges: [[0, 9]] } } };
    await t.sync(req);
    await assert.rejects(t.sync(req), (e) => e instanceof SyncError && e.errcode === "M_UNKNOWN_POS" && e.status === 400);
    assert.equal(t.pos, null);
    const r = await t.sync(req);
    assert.equal(calls[2].url.searchParams.get("pos"), null);
    assert.deepEqual(r.lists.rooms.entries(), []);
    await assert.rejects(t.sync(req), (e) => e.status === 401 && e.errcode === "M_UNKNOWN_TOKEN");
    assert.equal(t.pos, "1", "a failed request keeps the connection's pos");
});
