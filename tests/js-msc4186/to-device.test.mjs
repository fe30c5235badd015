// Real-client test: to-device messages through matrix-js-sdk 37.5.0's own to_device extension
// (registered by SlidingSyncSdk, acknowledging with `since` = the last next_batch) over
// MSC4186, each arriving exactly once: live, after a response lost in transit (the SDK retries
// the same pos), and after syncv3 forgot the connection (M_UNKNOWN_POS: the SDK starts a new
// connection and keeps its `since`).
//
// The user is tests/js/scenario.py's "crypter" (one room, Kappa); the SDK runs without its
// crypto stack, so to-device events reach ClientEvent.ToDeviceEvent unchanged.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { TestClient, control } from "./client.mjs";

const TYPE = "org.example.syncv3.test";
const tc = new TestClient("msc4186-to-device");
let scenario;
let next = 1; // the number of the next message pushed

const received = () => tc.toDevice.filter((e) => e.type === TYPE).map((e) => e.content.n);
const upTo = (n) => Array.from({ length: n }, (_, i) => i + 1);

// Queues one upstream sync carrying `count` numbered to-device messages.
async function push(count) {
    const msgs = [];
    for (let i = 0; i < count; i++) msgs.push({ type: TYPE, content: { n: next++ } });
    await control("POST", "/e2ee/push", { to_device: msgs });
}

function waitForAll(what) {
    const want = upTo(next - 1);
    return tc.waitFor(
        () => received().length >= want.length,
        () => `${what}: messages ${JSON.stringify(want)} (received ${JSON.stringify(received())})`,
    );
}

const carriesToDevice = (body) => (body.extensions?.to_device?.events ?? []).some((e) => e.type === TYPE);

before(async () => {
    assert.ok(process.env.SYNCV3_PROXY_URL, "run this through tests/js-msc4186/run.sh");
    scenario = await control("GET", "/e2ee/scenario");
    await tc.start(scenario, { room_list: { ranges: [[0, 0]], timeline_limit: 1, required_state: [] } }, {
        timeline_limit: 1,
        required_state: [],
    });
});

after(() => tc.stop());

test("live to-device messages arrive once, and every request acknowledges the last batch", async () => {
    await tc.settle();
    await push(2);
    await waitForAll("live");
    await tc.settle(); // one more round trip: nothing repeated
    assert.deepEqual(received(), upTo(2));
    const sss = tc.sssExchanges();
    const withTd = sss.filter((e) => e.responseBody?.extensions?.to_device);
    assert.ok(withTd.length > 0, "responses carry the to_device extension");
    for (const e of sss) assert.equal(e.requestBody?.extensions?.to_device?.enabled, true, "to_device on every request");
    const nb = withTd.at(-1).responseBody.extensions.to_device.next_batch;
    assert.equal(sss.at(-1).requestBody.extensions.to_device.since, nb, "the long-poll acknowledges next_batch");
});

test("a response lost in transit: the SDK retries the same pos and gets the messages once", async () => {
    await tc.settle();
    const lost = tc.loseNextResponse(carriesToDevice);
    const nBefore = tc.sssExchanges().length - 1; // from the parked long-poll on
    await push(2);
    const body = await lost;
    assert.deepEqual(body.extensions.to_device.events.map((e) => e.content.n), [3, 4]);
    await waitForAll("after the lost response"); // the SDK waits 5 s after a network error
    await tc.settle();
    assert.deepEqual(received(), upTo(4));
    const after = tc.sssExchanges().slice(nBefore);
    assert.equal(after[1].query.pos, after[0].query.pos, "the retry repeats the lost request's pos");
    assert.deepEqual(tc.errors, []);
});

test("syncv3 forgot the connection while a response was lost: the new connection redelivers once", async () => {
    await tc.settle();
    const lost = tc.loseNextResponse(carriesToDevice);
    const forgot = tc.forgetNextPos();
    await push(2);
    await lost;
    await forgot; // the SDK's retry got M_UNKNOWN_POS
    await waitForAll("on the new connection");
    await tc.settle();
    await push(1); // and live again afterwards
    await waitForAll("live on the new connection");
    await tc.settle();
    assert.deepEqual(received(), upTo(7));
    assert.deepEqual(tc.errors.map((e) => [e.httpStatus, e.errcode]), [[400, "M_UNKNOWN_POS"]]);
    const fresh = tc.sssExchanges().filter((e) => !e.query.pos);
    assert.equal(fresh.length, 2, "the first connection and one new one");
    assert.ok(fresh[1].requestBody.extensions.to_device.since, "the new connection keeps since");
});
