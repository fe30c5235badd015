// Browser test: syncv3's web client at /client/ in Debian's Chromium (playwright-core).
//
// Started by tests/browser/run.sh (through tests/js/run.sh), which provides:
//   SYNCV3_PROXY_URL    the syncv3 under test
//   SYNCV3_CONTROL_URL  the control API of tests/js/scenario.py (the fake homeserver, with the
//                       demo's users: alice has 60 rooms, each with 40 older messages behind its
//                       prev_batch; a PUT /send comes back in alice's next /sync)
//   SYNCV3_TEST_WORK    the work dir (browser profile, screenshot)
//
// One page goes through the steps in order: the redirect to /client/, a rejected token, a pasted
// token showing the demo's rooms (and remembered across a reload), scrolling that slides the list's window (a new
// ranges request, later rooms' names), opening a room (subscription, timeline, state, older
// messages via the homeserver's /messages), sending a message (PUT to the homeserver, then the
// event arriving in a sync response and in the timeline), the screenshot, and forgetting the token.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

import { chromium } from "playwright-core";
import { controlAt } from "../js/harness.mjs";

const PROXY = process.env.SYNCV3_PROXY_URL;
const CONTROL = process.env.SYNCV3_CONTROL_URL;
const WORK = process.env.SYNCV3_TEST_WORK || tmpdir();
const SHOT = process.env.SYNCV3_BROWSER_SCREENSHOT || join(WORK, "client.png");
const CHROMIUM = process.env.SYNCV3_CHROMIUM || "/usr/bin/chromium";
const SS_PATH = "/_matrix/client/unstable/org.matrix.msc3575/sync";
const WAIT_MS = 20000;
const control = (method, path, body) => controlAt(CONTROL, method, path, body);

let ctx, page, demo, profile;
const syncs = []; // {n, url, body, response} of every sliding sync request the page made
const pageErrors = [];

function syncsSince(n) {
    return syncs.slice(n);
}

function listRange(s) {
    return s.body && s.body.lists && s.body.lists.rooms && s.body.lists.rooms.ranges && s.body.lists.rooms.ranges[0];
}

before(async () => {
    assert.ok(PROXY && CONTROL, "run me through tests/browser/run.sh");
    demo = await control("GET", "/demo/scenario");
    profile = mkdtempSync(join(WORK, "chromium-profile-"));
    ctx = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        viewport: { width: 1440, height: 900 },
        deviceScaleFactor: 1,
    });
    page = ctx.pages()[0] || (await ctx.newPage());
    page.setDefaultTimeout(WAIT_MS);
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("console", (m) => m.type() === "error" && !/Failed to load resource/.test(m.text()) && pageErrors.push(m.text()));
    page.on("request", (r) => {
        if (!r.url().includes(SS_PATH)) return;
        let body = null;
        try {
            body = JSON.parse(r.postData() || "null");
        } catch {
            body = r.postData();
        }
        const entry = { n: syncs.length, url: new URL(r.url()), body, response: null };
        syncs.push(entry);
        r.response().then(
            async (res) => {
                try {
                    entry.response = res ? await res.json() : null;
                } catch {
                    /* aborted long-poll */
                }
            },
            () => {},
        );
    });
});

after(async () => {
    if (ctx) await ctx.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
});

test("/client redirects to /client/, which asks for a token and warns about to-device messages", async () => {
    const res = await page.goto(PROXY + "/client");
    assert.equal(page.url(), PROXY + "/client/");
    assert.equal(res.status(), 200);
    assert.match(res.headers()["content-type"], /^text\/html; charset=utf-8/);
    await page.locator("#login").waitFor({ state: "visible" });
    assert.match(await page.locator("#warning").innerText(), /to-device messages/);
    // The homeserver URL comes from /client/server.json.
    const server = await (await fetch(PROXY + "/client/server.json")).json();
    assert.equal(await page.locator("#hs-url").inputValue(), server.server);
});

test("a token the homeserver rejects brings the form back with the error, and is not kept", async () => {
    await page.locator("#token").fill("syt_not_a_token");
    await page.locator("#connect").click();
    await page.locator("#login-error", { hasText: "rejected" }).waitFor();
    assert.match(await page.locator("#login-error").innerText(), /401 M_UNKNOWN_TOKEN/);
    assert.ok(await page.locator("#login").isVisible());
    assert.equal(await page.evaluate(() => localStorage.getItem("syncv3.client.token")), null);
    syncs.length = 0;
});

test("a pasted token shows the demo's rooms, with avatars, unread counts, and is remembered", async () => {
    await page.locator("#token").fill(demo.token);
    await page.locator("#connect").click();
    const general = demo.rooms[0];
    const row = page.locator(`.room-row[data-room-id="${general.room_id}"]`);
    await row.locator(".room-name", { hasText: general.name }).waitFor();
    assert.equal(await page.locator("#room-count").innerText(), String(demo.count));
    assert.equal(await page.evaluate(() => localStorage.getItem("syncv3.client.token")), demo.token);
    const first = syncs[0];
    assert.equal(first.url.searchParams.get("pos"), null);
    assert.equal(listRange(first)[0], 0);
    assert.ok(first.body.extensions.to_device.enabled, "the page takes to-device messages (the warning says so)");
    // An mxc avatar is loaded from the homeserver's thumbnail endpoint; a room without one shows initials.
    await row.locator(".avatar.has-image img").waitFor();
    const src = await row.locator(".avatar img").getAttribute("src");
    assert.match(src, /\/_matrix\/media\/v3\/thumbnail\/localhost\/avatar0\?/);
    const plain = demo.rooms.find((r) => !r.has_avatar);
    const plainRow = page.locator(`.room-row[data-room-id="${plain.room_id}"]`);
    assert.equal(await plainRow.locator(".avatar img").count(), 0);
    assert.equal(await plainRow.locator(".initials").innerText(), plain.name.split(/\s+/).slice(0, 2).map((w) => w[0]).join("").toUpperCase());
    // General has an unread message for alice.
    assert.equal(await row.locator(".badge").innerText(), "1");
    // The inspector shows the connection's pos.
    await page.waitForFunction(() => /^\S+$/.test(document.getElementById("pos").textContent) && document.getElementById("pos").textContent !== "–");

    // A reload starts again with the remembered token: no typing.
    const before = syncs.length;
    await page.reload();
    await page.locator(`.room-row[data-room-id="${general.room_id}"] .room-name`).waitFor();
    assert.ok(await page.locator("#login").isHidden());
    assert.equal(syncsSince(before)[0].url.searchParams.get("pos"), null, "a new page is a new connection");
});

test("scrolling slides the window: a new ranges request, and later rooms' names appear", async () => {
    const last = demo.rooms[demo.rooms.length - 1];
    assert.equal(await page.locator(`.room-row[data-room-id="${last.room_id}"]`).count(), 0);
    const before = syncs.length;
    await page.locator("#room-list").hover();
    for (let i = 0; i < 12; i++) await page.mouse.wheel(0, 600);
    await page.locator(`.room-row[data-room-id="${last.room_id}"] .room-name`, { hasText: last.name }).waitFor();
    const moved = syncsSince(before).filter((s) => listRange(s) && listRange(s)[0] > 0);
    assert.ok(moved.length > 0, "a request with a window further down: " + JSON.stringify(syncsSince(before).map(listRange)));
    const req = moved[moved.length - 1];
    assert.ok(req.url.searchParams.get("pos"), "the same connection (pos) asks for the new window");
    const [a, b] = listRange(req);
    assert.ok(a <= demo.count - 1 && b >= demo.count - 1, `window ${a}-${b} covers the last room`);
    // Rooms above the window are gone from the page (only the window is drawn).
    assert.equal(await page.locator(`.room-row[data-room-id="${demo.rooms[0].room_id}"]`).count(), 0);
    // The server's ops (INVALIDATE for the old window, SYNC for the new) reached the page.
    await page.waitForFunction(() => [...document.querySelectorAll(".room-row.placeholder")].length === 0);
});

// A room near the end of the list (seen after scrolling) that alice shares with bob.
const openedRoom = () => demo.rooms.filter((r) => r.shared_with_bob).at(-1);

test("opening a room subscribes to it: timeline, state, then older messages via prev_batch", async () => {
    const room = openedRoom();
    const before = syncs.length;
    await page.locator(`.room-row[data-room-id="${room.room_id}"]`).click();
    await page.locator("#room-title", { hasText: room.name }).waitFor();
    await page.locator("#events .event-msg", { hasText: `Welcome to ${room.name}!` }).waitFor();
    const sub = syncsSince(before).find((s) => s.body.room_subscriptions && s.body.room_subscriptions[room.room_id]);
    assert.ok(sub, "a request with the room subscription");
    assert.deepEqual(sub.body.room_subscriptions[room.room_id].required_state, [["*", "*"]]);
    // The state tab lists the room's state events.
    await page.locator("#tab-state").click();
    await page.locator(".state-event .state-type", { hasText: "m.room.create" }).waitFor();
    assert.match(await page.locator("#tab-state").innerText(), /^State \(\d+\)$/);
    await page.locator("#tab-timeline").click();
    // Older messages from the homeserver's /messages, starting at the snapshot's prev_batch.
    await page.locator("#load-older").click();
    await page.locator("#events .event-msg", { hasText: `${room.history_prefix} ${demo.history}` }).waitFor();
    const reqs = await control("GET", "/requests");
    const msgs = reqs.filter((r) => r.method === "GET" && r.path.endsWith("/messages"));
    assert.ok(msgs.length >= 1, "GET /messages at the homeserver");
    assert.match(decodeURIComponent(msgs[0].query), /dir=b/);
    assert.match(decodeURIComponent(msgs[0].query), new RegExp("from=p_demo_" + demo.rooms.indexOf(room) + "(&|$)"));
    // The next page continues from the previous one's end.
    await page.locator("#load-older").click();
    await page.locator("#events .event-msg", { hasText: `${room.history_prefix} ${demo.history - 20}` }).waitFor();
});

test("a sent message goes to the homeserver and comes back through syncv3 into the timeline", async () => {
    const room = openedRoom();
    const text = "Hello from Chromium " + Date.now();
    await page.locator("#message").fill(text);
    await page.locator("#message").press("Enter");
    const confirmed = page.locator("#events .event-msg:not(.pending):not(.failed)", { hasText: text });
    await confirmed.waitFor();
    const eventId = await confirmed.getAttribute("data-event-id");
    assert.match(eventId, /^\$/);
    const puts = (await control("GET", "/requests")).filter((r) => r.method === "PUT" && r.path.includes("/send/m.room.message/"));
    assert.equal(puts.length, 1);
    assert.ok(puts[0].path.startsWith(`/_matrix/client/v3/rooms/${encodeURIComponent(room.room_id)}/send/`), puts[0].path);
    // It came in a sliding sync response, with our transaction ID.
    // (The long-poll that carried it may have started before the message was sent.)
    const deadline = Date.now() + WAIT_MS;
    let carried = null;
    while (!carried && Date.now() < deadline) {
        for (const s of syncs) {
            const tl = s.response && s.response.rooms && s.response.rooms[room.room_id] && s.response.rooms[room.room_id].timeline;
            const ev = (tl || []).find((e) => e.event_id === eventId);
            if (ev) carried = ev;
        }
        if (!carried) await new Promise((ok) => setTimeout(ok, 100));
    }
    assert.ok(carried, "the event in a sync response");
    assert.equal(carried.content.body, text);
    assert.match(carried.unsigned.transaction_id, /^syncv3client\./);
    assert.equal(await page.locator("#events .event-msg.pending").count(), 0);
});

test("screenshot, then 'Forget token' goes back to the token form and clears localStorage", async () => {
    // The slid room list, the open room with its older messages and the sent one, the inspector.
    await page.waitForFunction(() => document.querySelectorAll(".room-row.placeholder").length === 0);
    await page.locator(".room-row .avatar.has-image img").first().waitFor();
    mkdirSync(dirname(SHOT), { recursive: true });
    await page.screenshot({ path: SHOT });
    console.log("screenshot: " + SHOT);

    await page.locator("#forget").click();
    await page.locator("#login").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => localStorage.getItem("syncv3.client.token")), null);
    await page.reload();
    await page.locator("#login").waitFor({ state: "visible" });
    assert.deepEqual(pageErrors, []);
});
