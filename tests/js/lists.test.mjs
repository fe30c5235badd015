// Real-client test: several filtered and sorted lists, a room subscription, an invite accepted
// and a room left, with matrix-js-sdk 37.2.0's SlidingSync against syncv3.
//
// Started by tests/js/run.sh (SYNCV3_PROXY_URL, SYNCV3_CONTROL_URL, SYNCV3_JS_CAPTURE). It uses
// the scenario's second user, "lister" (GET /lists/scenario), so it does not disturb
// sliding-sync.test.mjs, which node --test runs at the same time.
//
// The lister has two DMs (m.direct account data) and three named rooms; activity is
// Mike < Dee (DM) < Zulu < Oscar (DM) < Echo. The client's lists:
//   dms      filters {is_dm: true}                    sort by_recency   -> Oscar, Dee
//   rooms    filters {is_dm: false, is_invite: false} sort by_name      -> Echo, Mike, Zulu
//   invites  filters {is_invite: true}                sort by_recency   -> (empty)
// all with timeline_limit 1. Then, step by step, checking the SDK's list model (getListData and
// the List events) and the RoomData it emitted:
//   1. a room subscription to Zulu with its own timeline_limit 3 and required_state (topic):
//      Zulu comes again as a snapshot with 3 events and the topic; a message in Zulu reaches it;
//   2. an invite to "Kilo" arrives: it shows in invites (with invite_state), nowhere else;
//   3. the user accepts it: Kilo leaves invites and is inserted by name into rooms
//      (Echo, Kilo, Mike, Zulu) with its state and the join in the timeline;
//   4. the user leaves Mike: Mike disappears from rooms (Echo, Kilo, Zulu) and the client gets
//      the leave event; the other lists do not change.

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
const POLL_TIMEOUT_MS = 20000; // the client's long-poll timeout (?timeout=)
const WAIT_MS = 30000;         // generous upper bound for anything we wait for
const SUB_TIMELINE_LIMIT = 3;

if (!process.env.SYNCV3_JS_DEBUG) logger.setLevel("warn");

const LISTS = {
    dms: {
        ranges: [[0, 9]],
        sort: ["by_recency"],
        filters: { is_dm: true },
        timeline_limit: 1,
        required_state: [["m.room.create", ""]],
    },
    rooms: {
        ranges: [[0, 9]],
        sort: ["by_name"],
        filters: { is_dm: false, is_invite: false },
        timeline_limit: 1,
        required_state: [
            ["m.room.name", ""],
            ["m.room.create", ""],
        ],
    },
    invites: {
        ranges: [[0, 9]],
        sort: ["by_recency"],
        filters: { is_invite: true },
        timeline_limit: 1,
        required_state: [["m.room.name", ""]],
    },
};
const SUBSCRIPTION = {
    timeline_limit: SUB_TIMELINE_LIMIT,
    required_state: [
        ["m.room.topic", ""],
        ["m.room.name", ""],
        ["m.room.member", "$LAZY"],
    ],
};

// ---------------------------------------------------------------- HTTP capture & control API
const { exchanges, httpEvents, capturingFetch, lastExchanges } = httpCapture({ file: "lists", onlyPath: SS_PATH });
const control = (method, path, body) => controlAt(CONTROL, method, path, body);

// ---------------------------------------------------------------- client state
let scenario;
let client;
let slidingSync;
let syncLoop;
let responses = 0;           // sliding sync responses the SDK finished processing (List events included)
const roomData = [];         // {seq, roomId, data} in arrival order (seq: response number)
const listEvents = [];       // {seq, key, count, order} from SlidingSyncEvent.List
const clientErrors = [];     // errors reported through SlidingSyncEvent.Lifecycle
const ssEvents = new EventEmitter(); // "update" after any SlidingSync event
const passed = new Set();    // steps that passed; later steps need the earlier ones

// Resolves with the first truthy value of check(), re-evaluated after every SlidingSync event;
// rejects after timeoutMs with `what()` and the latest exchanges with the proxy.
function waitFor(check, what, timeoutMs = WAIT_MS) {
    return waitUntil(
        [[ssEvents, ["update"]]],
        check,
        () =>
            `${what()}\n` +
            `lists now: ${JSON.stringify(describeLists())}\n` +
            `client errors: ${JSON.stringify(clientErrors)}\n` +
            `latest sliding sync exchanges with the proxy:\n${lastExchanges()}`,
        timeoutMs,
    );
}

function room(name) {
    const r = scenario.rooms.find((x) => x.name === name) ?? extraRooms.get(name);
    assert.ok(r, `no room named ${name} in the scenario`);
    return r;
}
const extraRooms = new Map(); // name -> {room_id, name} for rooms made during the test
const ids = (...names) => names.map((n) => room(n).room_id);

function nameOf(roomId) {
    for (const r of [...scenario.rooms, ...extraRooms.values()]) if (r.room_id === roomId) return r.name;
    return roomId;
}

// The SDK's model of a list: joined count and the room IDs at indexes 0, 1, ... (asserting
// there are no holes: every index below the highest one holds a room).
function listModel(key) {
    const d = slidingSync.getListData(key);
    const idx = Object.keys(d.roomIndexToRoomId).map(Number).sort((a, b) => a - b);
    const order = idx.map((i) => d.roomIndexToRoomId[i]);
    const holes = idx.length > 0 && idx.at(-1) !== idx.length - 1;
    return { count: d.joinedCount, order, holes, indexes: idx };
}

function describeLists() {
    const out = {};
    if (!slidingSync) return out;
    for (const key of Object.keys(LISTS)) {
        const m = listModel(key);
        out[key] = { count: m.count, order: m.order.map(nameOf), indexes: m.indexes };
    }
    return out;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// Waits until every list of `want` ({key: [names]}) shows exactly those rooms in that order with
// that count. Returns the response number at which it happened.
async function waitForLists(want, what) {
    const wantIds = Object.fromEntries(Object.entries(want).map(([k, names]) => [k, ids(...names)]));
    await waitFor(
        () =>
            Object.entries(wantIds).every(([k, order]) => {
                const m = listModel(k);
                return m.count === order.length && same(m.order, order);
            }),
        () => `${what}: lists ${JSON.stringify(want)}`,
    );
    for (const k of Object.keys(want)) assert.equal(listModel(k).holes, false, `list ${k} has holes`);
    return responses;
}

function roomDataSince(seq, roomId) {
    return roomData.filter((d) => d.seq > seq && d.roomId === roomId).map((d) => d.data);
}

function waitForRoomData(seq, roomId, pred, what) {
    return waitFor(
        () => roomDataSince(seq, roomId).find(pred),
        () =>
            `${what}: room data for ${nameOf(roomId)} after response #${seq} ` +
            `(got: ${JSON.stringify(roomDataSince(seq, roomId))})`,
    );
}

const hasEvent = (eventId) => (d) => d.timeline.some((ev) => ev.event_id === eventId);

function stateEvent(d, type, stateKey = "") {
    return d.required_state.find((e) => e.type === type && e.state_key === stateKey);
}

// Waits until the proxy processed everything queued upstream for the lister and the SDK has
// its next long-poll in flight (so the next upstream change arrives "live").
async function settle() {
    await control("POST", "/wait_idle", { token: scenario.token, timeout: 20 });
    const lastEnd = Math.max(0, ...exchanges.filter((e) => e.endedAt !== null).map((e) => e.endedAt));
    await new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            httpEvents.off("change", check);
            reject(new Error(`no sliding sync long-poll in flight\n${lastExchanges()}`));
        }, WAIT_MS);
        function check() {
            if (exchanges.some((e) => e.path === SS_PATH && e.query.pos && e.endedAt === null && e.startedAt >= lastEnd)) {
                clearTimeout(timer);
                httpEvents.off("change", check);
                resolve();
            }
        }
        httpEvents.on("change", check);
        check();
    });
    return responses;
}

function requireSteps(...steps) {
    for (const s of steps) assert.ok(passed.has(s), `an earlier step failed: ${s}`);
}

before(async () => {
    assert.ok(PROXY && CONTROL, "run this through tests/js/run.sh (SYNCV3_PROXY_URL, SYNCV3_CONTROL_URL)");
    scenario = await control("GET", "/lists/scenario");
    client = createClient({
        baseUrl: PROXY,
        accessToken: scenario.token,
        userId: scenario.user_id,
        deviceId: scenario.device_id,
        fetchFn: capturingFetch,
    });
    slidingSync = new SlidingSync(PROXY, new Map(Object.entries(LISTS)), SUBSCRIPTION, client, POLL_TIMEOUT_MS);
    slidingSync.on(SlidingSyncEvent.RoomData, (roomId, data) => {
        roomData.push({ seq: responses + 1, roomId, data: structuredClone(data) });
        ssEvents.emit("update");
    });
    slidingSync.on(SlidingSyncEvent.List, (key, count, indexToRoomId) => {
        const order = Object.keys(indexToRoomId)
            .map(Number)
            .sort((a, b) => a - b)
            .map((i) => indexToRoomId[i]);
        listEvents.push({ seq: responses + 1, key, count, order });
        ssEvents.emit("update");
    });
    slidingSync.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
        if (state === SlidingSyncState.RequestFinished && err) {
            clientErrors.push({ httpStatus: err.httpStatus, errcode: err.errcode, message: String(err.message ?? err) });
        }
        if (state === SlidingSyncState.Complete) {
            // The SDK emits Complete before it awaits the extensions and emits the List events
            // of this response (in microtasks); count the response once those have run.
            setImmediate(() => {
                responses++;
                ssEvents.emit("update");
            });
        }
    });
    syncLoop = slidingSync.start();
});

after(async () => {
    if (slidingSync) {
        slidingSync.stop();
        await Promise.race([syncLoop, new Promise((r) => setTimeout(r, 5000).unref())]);
    }
    client?.stopClient();
});

test("initial lists: DMs by recency, rooms by name, no invites", async () => {
    await waitForLists(
        { dms: ["Oscar", "Dee"], rooms: ["Echo", "Mike", "Zulu"], invites: [] },
        "initial sync",
    );
    assert.deepEqual(clientErrors, [], "the client saw request errors");
    // The List events carried the same orders.
    for (const [key, names] of [["dms", ["Oscar", "Dee"]], ["rooms", ["Echo", "Mike", "Zulu"]]]) {
        const last = listEvents.filter((e) => e.key === key).at(-1);
        assert.ok(last, `no List event for ${key}`);
        assert.deepEqual(last.order, ids(...names), `last List event of ${key}`);
        assert.equal(last.count, names.length);
    }
    assert.deepEqual(listEvents.filter((e) => e.key === "invites" && e.order.length > 0), [],
        "the empty invites list got rooms");

    for (const r of scenario.rooms) {
        const datas = roomDataSince(0, r.room_id);
        assert.ok(datas.length, `no room data for ${r.name}`);
        const d = datas[0];
        assert.equal(d.initial, true, `${r.name}: first room data must be a snapshot`);
        assert.equal(d.name, r.name, `${r.name}: computed name`);
        assert.equal(d.timeline.length, 1, `${r.name}: timeline_limit 1 (${JSON.stringify(d.timeline)})`);
        assert.equal(d.timeline[0].event_id, r.timeline.at(-1).event_id, `${r.name}: latest event`);
        assert.ok(stateEvent(d, "m.room.create"), `${r.name}: m.room.create missing`);
        assert.equal(d.invite_state, undefined, `${r.name}: a joined room with invite_state`);
        if (r.kind === "dm") {
            assert.equal(d.is_dm, true, `${r.name}: is_dm`);
            // the dms list asked for the create event only
            assert.deepEqual(d.required_state.map((e) => e.type), ["m.room.create"], `${r.name}: required_state`);
        } else {
            assert.ok(!d.is_dm, `${r.name}: is_dm on a group room`);
            assert.equal(stateEvent(d, "m.room.name")?.content?.name, r.name, `${r.name}: m.room.name`);
            assert.equal(d.required_state.length, 2, `${r.name}: required_state ${JSON.stringify(d.required_state)}`);
        }
    }
    passed.add("initial");
});

test("room subscription: its own timeline_limit and required_state, then live events", async () => {
    requireSteps("initial");
    const zulu = room("Zulu");
    const seq = await settle();
    // The SDK aborts its parked long-poll and resends with the subscription and a txn_id; the
    // promise resolves once the response echoing that txn_id was processed.
    const txn = slidingSync.modifyRoomSubscriptions(new Set([zulu.room_id]));
    await Promise.race([
        txn,
        new Promise((_, rej) =>
            setTimeout(() => rej(new Error(`the subscription's txn_id never came back\n${lastExchanges()}`)), WAIT_MS).unref(),
        ),
    ]);
    // A pending response to the same pos may answer the first such request (it is never dropped);
    // the subscription is then applied by the SDK's retry, whose answer echoes the txn_id.
    const subReqs = exchanges.filter((e) => e.path === SS_PATH && e.requestBody?.room_subscriptions?.[zulu.room_id]);
    const subReq = subReqs.find((e) => e.responseBody?.txn_id !== undefined) ?? subReqs[0];
    assert.ok(subReq, "the SDK never sent the room subscription");
    assert.deepEqual(subReq.requestBody.room_subscriptions[zulu.room_id], SUBSCRIPTION);
    assert.equal(subReq.responseBody?.txn_id, subReq.requestBody.txn_id, "txn_id echoed");
    const datas = roomDataSince(seq, zulu.room_id);
    assert.equal(datas.length, 1, `room data for Zulu after subscribing: ${JSON.stringify(datas)}`);
    const d = datas[0];
    assert.equal(d.initial, true, "a newly subscribed room comes as a snapshot");
    assert.equal(d.name, "Zulu");
    assert.deepEqual(
        d.timeline.map((e) => e.event_id),
        zulu.timeline.slice(-SUB_TIMELINE_LIMIT).map((e) => e.event_id),
        "the subscription's timeline_limit: the latest 3 events, oldest first",
    );
    assert.equal(stateEvent(d, "m.room.topic")?.content?.topic, "the last letter", "the subscription's required_state (topic)");
    assert.equal(stateEvent(d, "m.room.name")?.content?.name, "Zulu");
    // The lists did not move.
    await waitForLists({ dms: ["Oscar", "Dee"], rooms: ["Echo", "Mike", "Zulu"], invites: [] }, "after subscribing");

    // A message in the subscribed room reaches the client (and by_name keeps Zulu last).
    const seq2 = await settle();
    const { event } = await control("POST", "/message", { room_id: zulu.room_id, body: "news in Zulu", token: scenario.token });
    const live = await waitForRoomData(seq2, zulu.room_id, hasEvent(event.event_id), "a message in the subscribed Zulu");
    assert.ok(!live.initial, "a live event is not a snapshot");
    assert.equal(live.timeline.find((e) => e.event_id === event.event_id).content.body, "news in Zulu");
    zulu.timeline.push(event);
    await waitForLists({ dms: ["Oscar", "Dee"], rooms: ["Echo", "Mike", "Zulu"], invites: [] }, "after the message in Zulu");
    // The friend's member event came with the snapshot ($LAZY), so it is not repeated.
    assert.ok(!(live.required_state ?? []).some((e) => e.type === "m.room.member"), "a known sender's member event repeated");

    // Someone who never spoke writes: their member event comes along, so the client can name them.
    const quiet = `@quiet:${scenario.user_id.split(":")[1]}`;
    const seq3 = await settle();
    const { event: q } = await control("POST", "/message", { room_id: zulu.room_id, body: "hello, I'm new here", sender: quiet, token: scenario.token });
    const qd = await waitForRoomData(seq3, zulu.room_id, hasEvent(q.event_id), "a first message from Quiet");
    const member = (qd.required_state ?? []).find((e) => e.type === "m.room.member" && e.state_key === quiet);
    assert.equal(member?.content?.displayname, "Quiet", `Quiet's member event with the message: ${JSON.stringify(qd.required_state)}`);
    zulu.timeline.push(q);
    assert.deepEqual(clientErrors, [], "the client saw request errors");
    passed.add("subscription");
});

test("an invite arrives: it shows in the invites list only, with invite_state", async () => {
    requireSteps("initial");
    const seq = await settle();
    const inv = await control("POST", "/lists/invite", { name: "Kilo" });
    extraRooms.set("Kilo", { room_id: inv.room_id, name: "Kilo", kind: "group" });
    await waitForLists({ invites: ["Kilo"], dms: ["Oscar", "Dee"], rooms: ["Echo", "Mike", "Zulu"] }, "invite to Kilo");
    const ev = listEvents.filter((e) => e.key === "invites" && e.seq > seq).at(-1);
    assert.ok(ev, "no List event for invites");
    assert.deepEqual(ev.order, [inv.room_id]);
    assert.equal(ev.count, 1);

    const d = await waitForRoomData(seq, inv.room_id, () => true, "the invited room");
    assert.equal(d.initial, true);
    assert.equal(d.name, "Kilo", "name of the invite (from invite_state)");
    assert.ok(Array.isArray(d.invite_state), `invite_state missing: ${JSON.stringify(d)}`);
    const me = d.invite_state.find((e) => e.type === "m.room.member" && e.state_key === scenario.user_id);
    assert.equal(me?.content?.membership, "invite", `the user's invite in invite_state ${JSON.stringify(d.invite_state)}`);
    assert.equal(me.sender, "@carol:localhost");
    const nameEv = d.invite_state.find((e) => e.type === "m.room.name");
    assert.equal(nameEv?.content?.name, "Kilo");
    assert.equal(d.invite_state.length, inv.invite_state.length, "every stripped state event of the invite");
    assert.ok(!d.is_dm, "not a DM invite");
    assert.deepEqual(clientErrors, [], "the client saw request errors");
    passed.add("invite");
});

test("the invite is accepted: the room leaves invites and joins rooms, sorted by name", async () => {
    requireSteps("initial", "invite");
    const kilo = room("Kilo");
    const seq = await settle();
    const { event } = await control("POST", "/lists/accept", { room_id: kilo.room_id });
    kilo.timeline = [event];
    await waitForLists(
        { invites: [], rooms: ["Echo", "Kilo", "Mike", "Zulu"], dms: ["Oscar", "Dee"] },
        "Kilo joined",
    );
    const inv = listEvents.filter((e) => e.key === "invites" && e.seq > seq).at(-1);
    assert.ok(inv, "no List event for invites after the join");
    assert.deepEqual(inv.order, []);
    assert.equal(inv.count, 0);
    const rooms = listEvents.filter((e) => e.key === "rooms" && e.seq > seq).at(-1);
    assert.ok(rooms, "no List event for rooms after the join");
    assert.deepEqual(rooms.order, ids("Echo", "Kilo", "Mike", "Zulu"));

    const d = await waitForRoomData(seq, kilo.room_id, hasEvent(event.event_id), "Kilo's join");
    const datas = roomDataSince(seq, kilo.room_id);
    assert.ok(datas.some((x) => x.initial), `the joined room never came as a snapshot: ${JSON.stringify(datas)}`);
    const snap = datas.filter((x) => x.initial).at(-1);
    assert.equal(snap.name, "Kilo");
    assert.equal(stateEvent(snap, "m.room.name")?.content?.name, "Kilo", "required_state of the rooms list");
    assert.equal(stateEvent(snap, "m.room.create")?.content?.creator, "@carol:localhost");
    assert.equal(snap.invite_state, undefined, `a joined room with invite_state: ${JSON.stringify(snap)}`);
    const join = d.timeline.find((e) => e.event_id === event.event_id);
    assert.equal(join.type, "m.room.member");
    assert.equal(join.state_key, scenario.user_id);
    assert.equal(join.content.membership, "join");
    assert.deepEqual(clientErrors, [], "the client saw request errors");
    passed.add("accept");
});

test("a room is left: it disappears from the lists and the client gets the leave", async () => {
    requireSteps("initial", "accept");
    const expectRooms = ["Echo", "Kilo", "Zulu"];
    const mike = room("Mike");
    const seq = await settle();
    const { event } = await control("POST", "/lists/leave", { room_id: mike.room_id });
    await waitForLists({ rooms: expectRooms, dms: ["Oscar", "Dee"], invites: [] }, "Mike left");
    const rooms = listEvents.filter((e) => e.key === "rooms" && e.seq > seq).at(-1);
    assert.ok(rooms, "no List event for rooms after the leave");
    assert.deepEqual(rooms.order, ids(...expectRooms));
    assert.equal(rooms.count, 3);

    const d = await waitForRoomData(seq, mike.room_id, hasEvent(event.event_id), "Mike's leave event");
    const leave = d.timeline.find((e) => e.event_id === event.event_id);
    assert.equal(leave.type, "m.room.member");
    assert.equal(leave.state_key, scenario.user_id);
    assert.equal(leave.content.membership, "leave");

    // Nothing brings Mike back: after one more round trip (a message elsewhere) the lists hold.
    const seq2 = await settle();
    const { event: msg } = await control("POST", "/message", { room_id: room("Echo").room_id, body: "still here", token: scenario.token });
    await waitForRoomData(seq2, room("Echo").room_id, hasEvent(msg.event_id), "a message in Echo");
    await waitForLists({ rooms: expectRooms, dms: ["Oscar", "Dee"], invites: [] }, "after the message in Echo");
    assert.deepEqual(roomDataSince(seq2, mike.room_id), [], "room data for the left room");
    assert.deepEqual(clientErrors, [], "the client saw request errors");
});
