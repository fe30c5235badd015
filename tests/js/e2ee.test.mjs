// Real-client test: to-device messages, device-list changes and one-time-key counts through the
// sliding sync extensions `to_device` and `e2ee`, with matrix-js-sdk 37.2.0's SlidingSync
// against syncv3.
//
// Started by tests/js/run.sh (SYNCV3_PROXY_URL, SYNCV3_CONTROL_URL, SYNCV3_JS_CAPTURE). It uses
// the scenario's third user, "crypter" (GET /e2ee/scenario), so it does not disturb the other
// test files, which node --test runs at the same time.
//
// The SDK's own extensions (ExtensionToDevice / ExtensionE2EE in lib/sliding-sync-sdk.js) need
// its crypto stack; this file registers two small extensions of the same shape (name, when,
// onRequest(isInitial), onResponse(data)) that record what arrives:
//   to_device  enabled with limit 2 on the initial request; every request carries
//              since = the last next_batch received (the acknowledgement), as the SDK's does;
//   e2ee       enabled on the initial request only (sticky).
// Steps:
//   1. the initial response: e2ee carries the OTK counts and unused fallback key types of the
//      crypter's first upstream /sync; to_device starts with a next_batch and no events;
//   2. two upstream batches of to-device messages (3, then 2): the client gets each exactly
//      once, in order, at most 2 per response (so over at least 3 responses), every request
//      acknowledging the previous next_batch; a later round trip delivers nothing again;
//   3. device_lists changed/left with new OTK counts and fallback key types upstream: they
//      arrive in e2ee, and a later round trip does not repeat them.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";

import { createClient } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { controlAt, httpCapture, waitUntil } from "./harness.mjs";
import {
    ExtensionState,
    SlidingSync,
    SlidingSyncEvent,
    SlidingSyncState,
} from "matrix-js-sdk/lib/sliding-sync.js";

const PROXY = process.env.SYNCV3_PROXY_URL;
const CONTROL = process.env.SYNCV3_CONTROL_URL;
const SS_PATH = "/_matrix/client/unstable/org.matrix.msc3575/sync";
const POLL_TIMEOUT_MS = 20000; // the client's long-poll timeout (?timeout=)
const WAIT_MS = 30000;         // generous upper bound for anything we wait for
const TD_LIMIT = 2;            // the to_device extension's limit

if (!process.env.SYNCV3_JS_DEBUG) logger.setLevel("warn");

const LISTS = {
    all: {
        ranges: [[0, 9]],
        sort: ["by_recency"],
        timeline_limit: 1,
        required_state: [["m.room.name", ""]],
    },
};

// ---------------------------------------------------------------- HTTP capture & control API
const { exchanges, httpEvents, capturingFetch, lastExchanges } = httpCapture({ file: "e2ee", onlyPath: SS_PATH });
const control = (method, path, body) => controlAt(CONTROL, method, path, body);

// ---------------------------------------------------------------- client state
let scenario;
let client;
let slidingSync;
let syncLoop;
let responses = 0;           // sliding sync responses the SDK finished processing
const roomData = [];         // {seq, roomId, data}
const toDevice = [];         // {seq, since, next_batch, events} per to_device object received
const e2ee = [];             // {seq, data} per e2ee object received
const extRequests = [];      // {isInitial, to_device, e2ee}: what the extensions put in each request
const clientErrors = [];     // errors reported through SlidingSyncEvent.Lifecycle
const ssEvents = new EventEmitter(); // "update" after any SlidingSync event
const passed = new Set();    // steps that passed; later steps need the earlier ones

// The to_device extension: enabled (with a small limit) on the initial request; `since` is the
// last next_batch received, so each request acknowledges what the previous responses delivered.
class ToDeviceExtension {
    nextBatch = null;
    sentSince = undefined; // the since of the request in flight
    name() {
        return "to_device";
    }
    when() {
        return ExtensionState.PreProcess;
    }
    onRequest(isInitial) {
        const req = {};
        if (this.nextBatch !== null) req.since = this.nextBatch;
        if (isInitial) {
            req.enabled = true;
            req.limit = TD_LIMIT;
        }
        this.sentSince = req.since;
        return req;
    }
    async onResponse(data) {
        toDevice.push({
            seq: responses + 1,
            since: this.sentSince,
            next_batch: data?.next_batch,
            events: structuredClone(data?.events ?? []),
        });
        if (data?.next_batch) this.nextBatch = data.next_batch;
        ssEvents.emit("update");
    }
}

// The e2ee extension: enabled on the initial request (sticky), nothing afterwards.
class E2eeExtension {
    name() {
        return "e2ee";
    }
    when() {
        return ExtensionState.PreProcess;
    }
    onRequest(isInitial) {
        return isInitial ? { enabled: true } : undefined;
    }
    async onResponse(data) {
        e2ee.push({ seq: responses + 1, data: structuredClone(data ?? {}) });
        ssEvents.emit("update");
    }
}

const toDeviceExt = new ToDeviceExtension();

// Resolves with the first truthy value of check(), re-evaluated after every SlidingSync event;
// rejects after timeoutMs with `what()` and the latest exchanges with the proxy.
function waitFor(check, what, timeoutMs = WAIT_MS) {
    return waitUntil(
        [[ssEvents, ["update"]]],
        check,
        () =>
            `${what()}\n` +
            `to_device received: ${JSON.stringify(toDevice)}\n` +
            `e2ee received: ${JSON.stringify(e2ee)}\n` +
            `client errors: ${JSON.stringify(clientErrors)}\n` +
            `latest sliding sync exchanges with the proxy:\n${lastExchanges()}`,
        timeoutMs,
    );
}

const toDeviceEventsSince = (seq) => toDevice.filter((t) => t.seq > seq).flatMap((t) => t.events);
const e2eeSince = (seq) => e2ee.filter((x) => x.seq > seq).map((x) => x.data);

// Waits until the proxy processed everything queued upstream for the crypter and the SDK has
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

// One more round trip: a message in the crypter's room; resolves once its room data arrived.
async function roundTrip(body) {
    const seq = await settle();
    const kappa = scenario.rooms[0];
    const { event } = await control("POST", "/message", { room_id: kappa.room_id, body, token: scenario.token });
    await waitFor(
        () => roomData.some((d) => d.seq > seq && d.roomId === kappa.room_id && d.data.timeline?.some((e) => e.event_id === event.event_id)),
        () => `the message "${body}" in ${kappa.name}`,
    );
    // the response that carried it has been processed completely
    await waitFor(() => responses >= Math.max(...roomData.map((d) => d.seq)), () => "the response to finish");
    return seq;
}

function requireSteps(...steps) {
    for (const s of steps) assert.ok(passed.has(s), `an earlier step failed: ${s}`);
}

// The successful sliding sync exchanges, in order.
const ssExchanges = () => exchanges.filter((e) => e.path === SS_PATH && e.status === 200 && e.responseBody);

before(async () => {
    assert.ok(PROXY && CONTROL, "run this through tests/js/run.sh (SYNCV3_PROXY_URL, SYNCV3_CONTROL_URL)");
    scenario = await control("GET", "/e2ee/scenario");
    client = createClient({
        baseUrl: PROXY,
        accessToken: scenario.token,
        userId: scenario.user_id,
        deviceId: scenario.device_id,
        fetchFn: capturingFetch,
    });
    slidingSync = new SlidingSync(PROXY, new Map(Object.entries(LISTS)), {}, client, POLL_TIMEOUT_MS);
    slidingSync.registerExtension(toDeviceExt);
    slidingSync.registerExtension(new E2eeExtension());
    slidingSync.on(SlidingSyncEvent.RoomData, (roomId, data) => {
        roomData.push({ seq: responses + 1, roomId, data: structuredClone(data) });
        ssEvents.emit("update");
    });
    slidingSync.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
        if (state === SlidingSyncState.RequestFinished && err) {
            clientErrors.push({ httpStatus: err.httpStatus, errcode: err.errcode, message: String(err.message ?? err) });
        }
        if (state === SlidingSyncState.Complete) {
            // Complete comes before the post-processing; count the response once that ran.
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

test("initial: e2ee carries the key counts, to_device starts a stream", async () => {
    const kappa = scenario.rooms[0];
    await waitFor(() => roomData.some((d) => d.roomId === kappa.room_id), () => "the room Kappa");
    const counts = await waitFor(
        () => e2ee.find((x) => x.data.device_one_time_keys_count),
        () => "device_one_time_keys_count",
    );
    assert.deepEqual(counts.data.device_one_time_keys_count, scenario.otk_counts, "the OTK counts of the first upstream sync");
    const fb = e2ee.find((x) => x.data.device_unused_fallback_key_types);
    assert.ok(fb, `no device_unused_fallback_key_types: ${JSON.stringify(e2ee)}`);
    assert.deepEqual(fb.data.device_unused_fallback_key_types, scenario.fallback_key_types);
    assert.ok(toDevice.length > 0, "no to_device object in the responses");
    assert.match(String(toDevice[0].next_batch), /^\S+$/, "to_device has a next_batch");
    assert.deepEqual(toDeviceEventsSince(0), [], "no to-device messages yet");

    // What the extensions sent: the first request enables both (with the limit), later ones
    // carry only since (the extension parameters are sticky).
    const ss = exchanges.filter((e) => e.path === SS_PATH);
    const first = ss[0].requestBody;
    assert.equal(ss[0].query.pos, undefined, "the first request has no pos");
    assert.deepEqual(first.extensions.e2ee, { enabled: true });
    assert.deepEqual(first.extensions.to_device, { enabled: true, limit: TD_LIMIT });
    for (const e of ss.slice(1)) {
        assert.equal(e.requestBody.extensions.to_device.enabled, undefined, "enabled only on the first request");
        assert.equal(e.requestBody.extensions.e2ee, undefined, "e2ee only on the first request");
    }
    assert.deepEqual(clientErrors, [], "the client saw request errors");
    passed.add("initial");
});

test("to-device messages: each exactly once, in order, over several responses", async () => {
    requireSteps("initial");
    const seq = await settle();
    const firstSs = ssExchanges().length;
    const msg = (n) => ({ sender: `@sender${n % 2}:localhost`, type: "org.example.ping", content: { n, body: `ping ${n}` } });
    const batch1 = await control("POST", "/e2ee/push", { to_device: [1, 2, 3].map(msg) });
    assert.equal(batch1.to_device.length, 3);
    // the second batch goes upstream once the first has started arriving
    await waitFor(() => toDeviceEventsSince(seq).length > 0, () => "the first to-device message");
    const batch2 = await control("POST", "/e2ee/push", { to_device: [4, 5].map(msg) });
    assert.equal(batch2.to_device.length, 2);
    const want = [...batch1.to_device, ...batch2.to_device];
    await waitFor(() => toDeviceEventsSince(seq).length >= want.length, () => `${want.length} to-device messages`);

    const got = toDeviceEventsSince(seq);
    assert.deepEqual(got.map((e) => e.content.n), [1, 2, 3, 4, 5], "each message once, in order");
    for (const [i, e] of got.entries()) {
        assert.equal(e.type, want[i].type, `message ${i + 1}: type`);
        assert.equal(e.sender, want[i].sender, `message ${i + 1}: sender`);
        assert.deepEqual(e.content, want[i].content, `message ${i + 1}: content`);
    }
    const carrying = toDevice.filter((t) => t.seq > seq && t.events.length > 0);
    for (const t of carrying) assert.ok(t.events.length <= TD_LIMIT, `more than limit ${TD_LIMIT} in one response: ${JSON.stringify(t)}`);
    assert.ok(carrying.length >= 3, `5 messages with limit ${TD_LIMIT} need at least 3 responses (got ${carrying.length})`);

    // Each request acknowledged the previous response's next_batch, and next_batch moved on
    // with every response that carried messages.
    const ss = ssExchanges();
    for (let i = Math.max(1, firstSs); i < ss.length; i++) {
        const prevNb = ss[i - 1].responseBody.extensions?.to_device?.next_batch;
        if (ss[i].startedAt < ss[i - 1].endedAt) continue; // not sent after that response
        assert.equal(ss[i].requestBody.extensions.to_device.since, prevNb, `request #${ss[i].n} acknowledges ${prevNb}`);
    }
    const nbs = carrying.map((t) => t.next_batch);
    assert.equal(new Set(nbs).size, nbs.length, `next_batch repeats: ${JSON.stringify(nbs)}`);
    for (const t of carrying) assert.notEqual(t.since, t.next_batch, "next_batch moved past the messages");

    // Acknowledged messages never come again.
    const before = toDeviceExt.nextBatch;
    const seq2 = await roundTrip("after the to-device messages");
    assert.deepEqual(toDeviceEventsSince(seq2), [], "to-device messages delivered again");
    assert.equal(toDeviceExt.nextBatch, before, "next_batch moved without new messages");
    assert.deepEqual(clientErrors, [], "the client saw request errors");
    passed.add("to_device");
});

test("device list changes and key counts arrive in e2ee, once", async () => {
    requireSteps("initial");
    const seq = await settle();
    const changed = ["@alice:localhost", "@bob:localhost"];
    const left = ["@eve:localhost"];
    const otk = { signed_curve25519: 7 };
    await control("POST", "/e2ee/push", {
        device_lists: { changed, left },
        otk_counts: otk,
        fallback_key_types: [],
    });
    const union = (field) =>
        [...new Set(e2eeSince(seq).flatMap((d) => d.device_lists?.[field] ?? []))].sort();
    await waitFor(
        () =>
            JSON.stringify(union("changed")) === JSON.stringify(changed) &&
            JSON.stringify(union("left")) === JSON.stringify(left) &&
            e2eeSince(seq).some((d) => d.device_one_time_keys_count),
        () => `device_lists changed ${JSON.stringify(changed)} left ${JSON.stringify(left)} and the new OTK counts`,
    );
    const datas = e2eeSince(seq);
    assert.deepEqual(datas.filter((d) => d.device_one_time_keys_count).at(-1).device_one_time_keys_count, otk, "the new OTK counts");
    const fb = datas.filter((d) => d.device_unused_fallback_key_types).at(-1);
    assert.ok(fb, `the fallback key types (now none) did not arrive: ${JSON.stringify(datas)}`);
    assert.deepEqual(fb.device_unused_fallback_key_types, [], "the fallback key was used");
    for (const d of datas) {
        for (const u of d.device_lists?.changed ?? []) assert.ok(!left.includes(u), `${u} both changed and left`);
    }
    // no to-device messages came with it
    assert.deepEqual(toDeviceEventsSince(seq), [], "to-device messages with the device lists");

    // Delivered changes are not repeated.
    const seq2 = await roundTrip("after the device lists");
    const again = e2eeSince(seq2);
    assert.deepEqual(again.filter((d) => d.device_lists && (d.device_lists.changed?.length || d.device_lists.left?.length)), [],
        `device list changes repeated: ${JSON.stringify(again)}`);
    assert.deepEqual(again.filter((d) => d.device_one_time_keys_count || d.device_unused_fallback_key_types), [],
        `unchanged key counts sent again: ${JSON.stringify(again)}`);
    assert.deepEqual(clientErrors, [], "the client saw request errors");
});
