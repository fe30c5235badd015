// Real-client test: matrix-js-sdk 37.2.0's SlidingSync (MSC3575) against syncv3.
//
// Started by tests/js/run.sh, which provides:
//   SYNCV3_PROXY_URL    the syncv3 under test
//   SYNCV3_CONTROL_URL  the control API of tests/js/scenario.py (the fake homeserver)
//   SYNCV3_JS_CAPTURE   (optional) file receiving every client<->proxy HTTP exchange, one JSON
//                       object per line
//
// The scenario: one user with four rooms whose activity is Alpha < Bravo < Charlie < Delta.
// A by_recency list [[0,9]] must show Delta, Charlie, Bravo, Alpha with each room's name,
// required state and latest event. Then the fake homeserver delivers a message in the bottom
// room while the client's long-poll is parked at the proxy: the client's list must move that
// room to the top and the room data must carry the message. A second message repeats this
// for the new bottom room.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";

import { createClient } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { controlAt, httpCapture, waitUntil } from "./harness.mjs";
import { SlidingSync, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";

const PROXY = process.env.SYNCV3_PROXY_URL;
const CONTROL = process.env.SYNCV3_CONTROL_URL;
const SS_PATH = "/_matrix/client/unstable/org.matrix.msc3575/sync";
const LIST = "all";
const POLL_TIMEOUT_MS = 20000; // the client's long-poll timeout (?timeout=)
const WAIT_MS = 30000;         // generous upper bound for anything we wait for
const PARK_SETTLE_MS = 300;    // see moveToTop

if (!process.env.SYNCV3_JS_DEBUG) logger.setLevel("warn");

// ---------------------------------------------------------------- HTTP capture & control API
const { exchanges, httpEvents, capturingFetch, lastExchanges } = httpCapture({});
const control = (method, path, body) => controlAt(CONTROL, method, path, body);

// ---------------------------------------------------------------- waiting
// Resolves with the first truthy value of check(), re-evaluated whenever `emitter` emits one of
// `events`; rejects after timeoutMs with `what` and the latest HTTP exchanges.
function waitFor(emitters, check, what, timeoutMs = WAIT_MS) {
    return waitUntil(
        emitters,
        check,
        () =>
            `${what}\n` +
            `client errors: ${JSON.stringify(clientErrors)}\n` +
            `latest HTTP exchanges with the proxy:\n${lastExchanges()}`,
        timeoutMs,
    );
}

// ---------------------------------------------------------------- client state
let scenario;
let client;
let slidingSync;
let syncLoop;
let initialOk = false;
const roomData = new Map(); // room_id -> [room data objects in arrival order]
const listUpdates = [];     // [{count, order: [room_id...]}] from SlidingSyncEvent.List
const clientErrors = [];    // errors reported through SlidingSyncEvent.Lifecycle
const ssEvents = new EventEmitter(); // re-emits "update" after any SlidingSync event

function listOrder(indexToRoomId) {
    const out = [];
    for (let i = 0; indexToRoomId[i] !== undefined; i++) out.push(indexToRoomId[i]);
    return out;
}

function roomIds(...names) {
    return names.map((n) => {
        const r = scenario.rooms.find((x) => x.name === n);
        assert.ok(r, `no room named ${n} in the scenario`);
        return r.room_id;
    });
}

function nameOf(roomId) {
    return scenario.rooms.find((r) => r.room_id === roomId)?.name ?? roomId;
}

function waitForOrder(names, what) {
    const want = roomIds(...names);
    return waitFor(
        [[ssEvents, ["update"]]],
        () => {
            const last = listUpdates.at(-1);
            return last && JSON.stringify(last.order) === JSON.stringify(want) ? last : null;
        },
        `${what}: list "${LIST}" ordered ${names.join(", ")} ` +
            `(list updates so far: ${JSON.stringify(listUpdates.map((u) => u.order.map(nameOf)))})`,
    );
}

function waitForRoomEvent(roomId, eventId, what) {
    return waitFor(
        [[ssEvents, ["update"]]],
        () => (roomData.get(roomId) ?? []).find((d) => d.timeline.some((ev) => ev.event_id === eventId)),
        `${what}: room data for ${nameOf(roomId)} carrying event ${eventId}`,
    );
}

// The sliding sync request currently parked at the proxy: sent with a pos, no answer yet,
// sent after `since` (ms).
function waitForParkedRequest(since, what) {
    return waitFor(
        [[httpEvents, ["change"]]],
        () =>
            exchanges.find(
                (e) => e.path === SS_PATH && e.query.pos && e.endedAt === null && e.startedAt >= since,
            ),
        `${what}: a sliding sync long-poll in flight`,
    );
}

before(async () => {
    assert.ok(PROXY && CONTROL, "run this through tests/js/run.sh (SYNCV3_PROXY_URL, SYNCV3_CONTROL_URL)");
    scenario = await control("GET", "/scenario");
    client = createClient({
        baseUrl: PROXY,
        accessToken: scenario.token,
        userId: scenario.user_id,
        deviceId: scenario.device_id,
        fetchFn: capturingFetch,
    });
    const lists = new Map([
        [
            LIST,
            {
                ranges: [[0, 9]],
                sort: ["by_recency"],
                timeline_limit: 1,
                required_state: [
                    ["m.room.name", ""],
                    ["m.room.create", ""],
                ],
            },
        ],
    ]);
    slidingSync = new SlidingSync(PROXY, lists, { timeline_limit: 1, required_state: [] }, client, POLL_TIMEOUT_MS);
    slidingSync.on(SlidingSyncEvent.RoomData, (roomId, data) => {
        if (!roomData.has(roomId)) roomData.set(roomId, []);
        roomData.get(roomId).push(structuredClone(data));
        ssEvents.emit("update");
    });
    slidingSync.on(SlidingSyncEvent.List, (key, joinedCount, indexToRoomId) => {
        if (key === LIST) listUpdates.push({ count: joinedCount, order: listOrder(indexToRoomId) });
        ssEvents.emit("update");
    });
    slidingSync.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
        if (state === SlidingSyncState.RequestFinished && err) {
            clientErrors.push({ httpStatus: err.httpStatus, errcode: err.errcode, message: String(err.message ?? err) });
        }
    });
    syncLoop = slidingSync.start();
});

after(async () => {
    if (slidingSync) {
        slidingSync.stop();
        // start() returns once the aborted request has unwound.
        await Promise.race([syncLoop, new Promise((r) => setTimeout(r, 5000).unref())]);
    }
    client?.stopClient();
});

test("initial list: rooms by recency with names, required_state and the latest event", async () => {
    const update = await waitForOrder(["Delta", "Charlie", "Bravo", "Alpha"], "initial sync");
    assert.equal(update.count, 4, "joined count of the list");
    assert.deepEqual(slidingSync.getListData(LIST).joinedCount, 4);
    assert.deepEqual(clientErrors, [], "the client saw request errors");

    for (const room of scenario.rooms) {
        const datas = roomData.get(room.room_id);
        assert.ok(datas?.length, `no room data for ${room.name}`);
        const d = datas[0];
        assert.equal(d.initial, true, `${room.name}: first room data must be a snapshot`);
        assert.equal(d.name, room.name, `${room.name}: computed name`);
        const nameEv = d.required_state.find((e) => e.type === "m.room.name" && e.state_key === "");
        assert.ok(nameEv, `${room.name}: m.room.name missing from required_state ${JSON.stringify(d.required_state)}`);
        assert.equal(nameEv.content.name, room.name);
        const createEv = d.required_state.find((e) => e.type === "m.room.create" && e.state_key === "");
        assert.ok(createEv, `${room.name}: m.room.create missing from required_state`);
        assert.equal(createEv.content.creator, scenario.user_id);
        const others = d.required_state.filter((e) => !["m.room.name", "m.room.create"].includes(e.type));
        assert.deepEqual(others, [], `${room.name}: required_state holds unrequested events`);
        assert.equal(d.timeline.length, 1, `${room.name}: timeline_limit 1`);
        assert.equal(d.timeline[0].event_id, room.last_event.event_id);
        assert.equal(d.timeline[0].content.body, room.last_event.content.body);
        assert.equal(d.timeline[0].sender, room.last_event.sender);
    }
    initialOk = true;
});

async function moveToTop(bottomName, before, after, text) {
    assert.ok(initialOk, "the initial sync failed (see the first test)");
    // The proxy has processed everything upstream and is polling again ...
    await control("POST", "/wait_idle", { timeout: 20 });
    // ... and the client has its next long-poll (with the pos of its last answer) in flight.
    const lastResponseAt = Math.max(...exchanges.filter((e) => e.endedAt !== null).map((e) => e.endedAt));
    const parked = await waitForParkedRequest(lastResponseAt, `before the message in ${bottomName}`);
    assert.equal(JSON.stringify(listUpdates.at(-1).order), JSON.stringify(roomIds(...before)));

    // Give the proxy a moment to receive that request and park it. This only makes the
    // parked-long-poll path the one exercised; nothing is asserted on this delay.
    await new Promise((r) => setTimeout(r, PARK_SETTLE_MS));
    assert.equal(parked.endedAt, null, `the long-poll returned without news: ${JSON.stringify(parked)}`);

    const [roomId] = roomIds(bottomName);
    const sentAt = Date.now();
    const { event } = await control("POST", "/message", { room_id: roomId, body: text });

    const data = await waitForRoomEvent(roomId, event.event_id, `message in ${bottomName}`);
    const update = await waitForOrder(after, `after the message in ${bottomName}`);
    assert.equal(update.count, 4);

    // The live update answered the long-poll that was parked when the message arrived, well
    // before that poll's own timeout.
    assert.ok(parked.endedAt !== null, "the parked request is still open");
    assert.equal(parked.status, 200, `parked request: ${JSON.stringify(parked)}`);
    assert.ok(parked.startedAt <= sentAt, "the long-poll was not sent before the message");
    assert.ok(parked.endedAt - sentAt < POLL_TIMEOUT_MS / 2,
        `the long-poll was not woken by the message (answered ${parked.endedAt - sentAt} ms after it)`);
    const parkedRooms = parked.responseBody?.rooms ?? {};
    assert.ok(
        parkedRooms[roomId]?.timeline?.some((e) => e.event_id === event.event_id),
        `the parked long-poll's answer does not carry the message: ${JSON.stringify(parked.responseBody)}`,
    );

    const ev = data.timeline.find((e) => e.event_id === event.event_id);
    assert.equal(ev.type, "m.room.message");
    assert.equal(ev.sender, event.sender);
    assert.equal(ev.content.body, text);
    assert.equal(ev.origin_server_ts, event.origin_server_ts);
    assert.deepEqual(clientErrors, [], "the client saw request errors");
}

test("live update: a message in the bottom room moves it to the top", async () => {
    await moveToTop("Alpha", ["Delta", "Charlie", "Bravo", "Alpha"], ["Alpha", "Delta", "Charlie", "Bravo"],
        "Alpha is back on top");
});

test("live update: a second message moves the new bottom room to the top", async () => {
    await moveToTop("Bravo", ["Alpha", "Delta", "Charlie", "Bravo"], ["Bravo", "Alpha", "Delta", "Charlie"],
        "and now Bravo");
});
