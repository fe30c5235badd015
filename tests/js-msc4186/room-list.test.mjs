// Real-client test: matrix-js-sdk 37.5.0 (MSC4186, simplified sliding sync) against syncv3,
// driven like Element Web's room list: one list "room_list" with a small window, the SDK's
// room models (names, timelines, membership) read back as the UI would.
//
// The user is tests/js/scenario.py's "lister": rooms by activity Mike < Dee (DM) < Zulu <
// Oscar (DM) < Echo, the DMs without a room name (their other member has a displayname).
// The steps build on each other and run in order.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { EventType, NotificationCountType } from "matrix-js-sdk";
import { MSC3575_STATE_KEY_ME, MSC3575_WILDCARD } from "matrix-js-sdk/lib/sliding-sync.js";
import { SSS_PATH, TestClient, control } from "./client.mjs";

const LIST = "room_list";
// Element Web's room list parameters (SlidingSyncManager), with a window of 3.
const ROOM_LIST = {
    ranges: [[0, 2]],
    timeline_limit: 1,
    required_state: [
        [EventType.RoomJoinRules, ""],
        [EventType.RoomAvatar, ""],
        [EventType.RoomTombstone, ""],
        [EventType.RoomEncryption, ""],
        [EventType.RoomCreate, ""],
        [EventType.SpaceChild, MSC3575_WILDCARD],
        [EventType.SpaceParent, MSC3575_WILDCARD],
        [EventType.RoomMember, MSC3575_STATE_KEY_ME],
    ],
};
// Element Web's subscriptions for an opened room: all state by default (encrypted rooms need
// every member); a custom one loading members lazily for unencrypted rooms.
const SUBSCRIPTION = { timeline_limit: 15, required_state: [[MSC3575_WILDCARD, MSC3575_WILDCARD]] };
const UNENCRYPTED = "unencrypted";
const UNENCRYPTED_SUBSCRIPTION = {
    timeline_limit: 15,
    required_state: [
        [MSC3575_WILDCARD, MSC3575_WILDCARD],
        [EventType.RoomMember, MSC3575_STATE_KEY_ME],
        [EventType.RoomMember, "$LAZY"],
    ],
};

const tc = new TestClient("msc4186-room-list");
let scenario;
const extra = new Map(); // rooms created during the test: name -> room_id

function id(name) {
    const r = scenario.rooms.find((x) => x.name === name);
    if (r) return r.room_id;
    assert.ok(extra.has(name), `no room named ${name}`);
    return extra.get(name);
}
const ids = (...names) => names.map(id);
const sdkRoom = (name) => tc.client.getRoom(id(name));
const names = (roomIds) => roomIds.map((rid) => tc.client.getRoom(rid)?.name ?? rid);

// The room list as Element Web orders it: the SDK's rooms by bump stamp, newest first.
function sdkOrder() {
    return tc.client
        .getRooms()
        .filter((r) => r.getBumpStamp() !== undefined)
        .sort((a, b) => b.getBumpStamp() - a.getBumpStamp())
        .map((r) => r.roomId);
}

// The window of the list in the latest response that had one.
function lastWindow() {
    for (let i = tc.responses.length - 1; i >= 0; i--) {
        const l = tc.responses[i].lists?.[LIST];
        if (l?.ops?.length) return { count: l.count, roomIds: l.ops[0].room_ids };
    }
    return null;
}

function timelineIds(name) {
    return sdkRoom(name)?.getLiveTimeline().getEvents().map((e) => e.getId()) ?? [];
}

function waitForEvent(name, eventId, what) {
    return tc.waitFor(
        () => timelineIds(name).includes(eventId),
        () => `${what}: event ${eventId} in ${name}'s timeline (it has ${JSON.stringify(timelineIds(name))})`,
    );
}

before(async () => {
    assert.ok(process.env.SYNCV3_PROXY_URL, "run this through tests/js-msc4186/run.sh");
    scenario = await control("GET", "/lists/scenario");
    await tc.start(scenario, { [LIST]: ROOM_LIST }, SUBSCRIPTION);
});

after(() => tc.stop());

test("the room list: count, window, room names from m.room.name and from heroes", async () => {
    assert.equal(tc.supportsSss, true);
    const first = tc.sssExchanges()[0];
    assert.equal(first.path, SSS_PATH, "the SDK talks MSC4186 on the homeserver's base URL");
    await tc.waitFor(
        () => lastWindow() && tc.client.getRoom(id("Zulu")),
        () => "the first list response",
    );
    assert.deepEqual(lastWindow(), { count: 5, roomIds: ids("Echo", "Oscar", "Zulu") });
    assert.equal(tc.slidingSync.getListData(LIST).joinedCount, 5);
    // only the window's rooms are known to the SDK, ordered as the server ordered them
    assert.deepEqual(names(sdkOrder()), ["Echo", "Oscar", "Zulu"]);
    assert.equal(sdkRoom("Echo").name, "Echo");
    assert.equal(sdkRoom("Zulu").name, "Zulu");
    assert.equal(sdkRoom("Oscar").name, "Oscar", "a DM without m.room.name is named after its hero");
    assert.equal(sdkRoom("Oscar").getMember(scenario.user_id)?.membership, "join", "$ME in required_state");
    for (const n of ["Echo", "Oscar", "Zulu"]) {
        const want = scenario.rooms.find((r) => r.name === n).timeline.at(-1).event_id;
        assert.deepEqual(timelineIds(n), [want], `${n}: timeline_limit 1 gives the latest event`);
        assert.equal(sdkRoom(n).getMyMembership(), "join");
    }
    assert.equal(tc.client.getRoom(id("Dee")), null, "Dee is outside the window");
    // Element Web finds DMs through m.direct (the account_data extension)
    await tc.waitFor(() => tc.client.getAccountData("m.direct"), () => "m.direct account data");
    assert.deepEqual(tc.client.getAccountData("m.direct").getContent(), {
        "@dee:localhost": [id("Dee")],
        "@oscar:localhost": [id("Oscar")],
    });
});

test("a live message moves its room to the top and lands in the SDK's timeline", async () => {
    await tc.settle();
    const before = tc.responses.length;
    const { event } = await control("POST", "/message", { room_id: id("Zulu"), body: "Zulu goes up" });
    await waitForEvent("Zulu", event.event_id, "the live message");
    await tc.waitFor(() => lastWindow()?.roomIds[0] === id("Zulu"), () => "Zulu at the top of the window");
    assert.deepEqual(lastWindow(), { count: 5, roomIds: ids("Zulu", "Echo", "Oscar") });
    assert.deepEqual(names(sdkOrder()), ["Zulu", "Echo", "Oscar"]);
    const tl = timelineIds("Zulu");
    assert.equal(tl.at(-1), event.event_id);
    assert.equal(tl.filter((e) => e === event.event_id).length, 1, "delivered once");
    const fresh = tc.responses.slice(before);
    assert.ok(fresh.every((r) => Object.keys(r.rooms).every((rid) => rid === id("Zulu"))),
        `only Zulu changed: ${JSON.stringify(fresh.map((r) => Object.keys(r.rooms)))}`);
});

test("a live m.room.name renames the room in the SDK (the name field; the list asks no m.room.name)", async () => {
    for (const name of ["Zulu, renamed", "Zulu"]) {
        await tc.settle();
        const { event } = await control("POST", "/rename", { room_id: id("Zulu"), name });
        await waitForEvent("Zulu", event.event_id, `the rename to ${name}`);
        // (the SDK recalculates the name after it added the timeline)
        await tc.waitFor(() => sdkRoom("Zulu").name === name, () => `Zulu named ${name} (is ${sdkRoom("Zulu").name})`);
        assert.equal(sdkRoom("Zulu").currentState.getStateEvents("m.room.name", "")?.getContent().name, name);
    }
    assert.deepEqual(names(sdkOrder()), ["Zulu", "Echo", "Oscar"], "a rename does not bump");
});

test("typing and a read receipt reach the SDK through its typing and receipts extensions", async () => {
    await tc.settle();
    const friend = "@friend:localhost";
    const latest = timelineIds("Zulu").at(-1);
    await control("POST", "/ephemeral", { room_id: id("Zulu"), typing: [friend], receipt: { event_id: latest, user: friend } });
    await tc.waitFor(
        () => sdkRoom("Zulu").getReadReceiptForUserId(friend, true)?.eventId === latest,
        () => `${friend}'s receipt on ${latest} in Zulu`,
    );
    const typing = tc.ephemeral.filter((e) => e.roomId === id("Zulu") && e.type === "m.typing");
    assert.deepEqual(typing.map((e) => e.content.user_ids), [[friend]]);
});

test("unread counts reach the SDK's room", async () => {
    await tc.settle();
    const { event } = await control("POST", "/message", {
        room_id: id("Zulu"), body: "@lister: look", notification_count: 2, highlight_count: 1,
    });
    await waitForEvent("Zulu", event.event_id, "the counted message");
    assert.equal(sdkRoom("Zulu").getUnreadNotificationCount(NotificationCountType.Total), 2);
    assert.equal(sdkRoom("Zulu").getUnreadNotificationCount(NotificationCountType.Highlight), 1);
    assert.equal(sdkRoom("Echo").getUnreadNotificationCount(NotificationCountType.Total), 0);
});

test("a favourite tag reaches the SDK's room through the account_data extension", async () => {
    await tc.settle();
    await control("POST", "/tag", { room_id: id("Echo"), tags: { "m.favourite": { order: 0.5 } } });
    await tc.waitFor(() => sdkRoom("Echo").tags["m.favourite"], () => "Echo's m.favourite tag");
    assert.deepEqual(sdkRoom("Echo").tags, { "m.favourite": { order: 0.5 } });
});

test("opening a room of the window (a subscription) back-fills the SDK's timeline once", async () => {
    await tc.settle();
    const known = timelineIds("Zulu");
    const before = tc.responses.length;
    tc.slidingSync.modifyRoomSubscriptions(new Set([id("Zulu")]));
    const zulu = scenario.rooms.find((r) => r.name === "Zulu");
    const all = [...zulu.timeline.map((e) => e.event_id), ...known.slice(1)];
    await tc.waitFor(
        () => timelineIds("Zulu").length >= all.length,
        () => `Zulu's whole timeline (has ${JSON.stringify(timelineIds("Zulu"))})`,
    );
    assert.deepEqual(timelineIds("Zulu"), all, "the older events before the known ones, in order, once");
    assert.equal(sdkRoom("Zulu").getMember("@quiet:localhost")?.name, "Quiet", "the subscription's [*,*]");
    await tc.settle(); // the next request no longer carries the subscription
    const fresh = tc.responses.slice(before);
    const sent = fresh.filter((r) => id("Zulu") in r.rooms).map((r) => r.rooms[id("Zulu")]);
    assert.equal(sent.length, 1, `Zulu sent once: ${JSON.stringify(sent.map((r) => Object.keys(r)))}`);
    // the SDK has the room: a delta whose timeline is expanded (and therefore limited)
    assert.equal(sent[0].initial, undefined);
    assert.equal(sent[0].unstable_expanded_timeline, true);
    assert.equal(sent[0].limited, true);
    assert.deepEqual(timelineIds("Zulu"), all);
});

test("a room subscription outside the window gives its timeline and state", async () => {
    await tc.settle();
    const dee = scenario.rooms.find((r) => r.name === "Dee");
    const nBefore = tc.sssExchanges().length;
    tc.slidingSync.addCustomSubscription(UNENCRYPTED, UNENCRYPTED_SUBSCRIPTION);
    tc.slidingSync.useCustomSubscription(dee.room_id, UNENCRYPTED);
    tc.slidingSync.modifyRoomSubscriptions(new Set([dee.room_id]));
    await tc.waitFor(() => sdkRoom("Dee"), () => "the subscribed room Dee");
    const room = sdkRoom("Dee");
    assert.equal(room.name, "Dee", "a DM without m.room.name is named after its hero");
    assert.deepEqual(timelineIds("Dee"), dee.timeline.map((e) => e.event_id));
    assert.equal(room.getMyMembership(), "join");
    assert.equal(room.currentState.getStateEvents(EventType.RoomJoinRules, "")?.getContent().join_rule, "invite");
    assert.equal(room.getMember("@dee:localhost")?.name, "Dee", "[*,*] gives the members");
    assert.equal(room.getJoinedMemberCount(), 2);
    assert.deepEqual(lastWindow().roomIds, ids("Zulu", "Echo", "Oscar"), "the list is unchanged");
    const asked = tc.sssExchanges().slice(nBefore).find((e) => e.requestBody?.room_subscriptions);
    assert.deepEqual(asked.requestBody.room_subscriptions, { [dee.room_id]: UNENCRYPTED_SUBSCRIPTION });
});

test("an invite shows as an invite, accepting it makes it a joined room with its timeline", async () => {
    await tc.settle();
    const { room_id: kilo } = await control("POST", "/lists/invite", { name: "Kilo" });
    extra.set("Kilo", kilo);
    await tc.waitFor(() => sdkRoom("Kilo")?.getMyMembership() === "invite", () => "Kilo as an invite");
    assert.equal(sdkRoom("Kilo").name, "Kilo", "named from invite_state");
    await tc.waitFor(() => lastWindow()?.count === 6, () => "the invite counted in the list");
    assert.deepEqual(lastWindow().roomIds, ids("Kilo", "Zulu", "Echo"));

    await tc.settle();
    const { event: join } = await control("POST", "/lists/accept", { room_id: kilo });
    await tc.waitFor(() => sdkRoom("Kilo").getMyMembership() === "join", () => "Kilo joined");
    await waitForEvent("Kilo", join.event_id, "the join");
    assert.equal(sdkRoom("Kilo").name, "Kilo");
    assert.equal(sdkRoom("Kilo").getMember(scenario.user_id)?.membership, "join");
    assert.deepEqual(lastWindow(), { count: 6, roomIds: ids("Kilo", "Zulu", "Echo") });
});

test("changing the ranges while a response is in flight (abort + resend) loses nothing", async () => {
    await tc.settle();
    const nBefore = tc.sssExchanges().length - 1; // from the parked long-poll on
    // The message's response reaches the client only after the client aborted the request
    // (as Element Web does when it grows the window); the SDK resends with the same pos.
    const held = tc.holdNextResponse((body) => body.rooms && id("Echo") in body.rooms);
    const { event } = await control("POST", "/message", { room_id: id("Echo"), body: "Echo while aborting" });
    await held;
    tc.slidingSync.setListRanges(LIST, [[0, 5]]);
    await waitForEvent("Echo", event.event_id, "the message of the aborted response");
    await tc.waitFor(() => lastWindow()?.roomIds.length === 6 && sdkRoom("Mike"), () => "the grown window");
    assert.deepEqual(lastWindow(), { count: 6, roomIds: ids("Echo", "Kilo", "Zulu", "Oscar", "Dee", "Mike") });
    assert.deepEqual(names(sdkOrder()), ["Echo", "Kilo", "Zulu", "Oscar", "Dee", "Mike"]);
    assert.equal(timelineIds("Echo").filter((e) => e === event.event_id).length, 1, "delivered once");
    assert.equal(sdkRoom("Mike").name, "Mike");
    const mike = scenario.rooms.find((r) => r.name === "Mike");
    assert.equal(timelineIds("Mike").at(-1), mike.timeline.at(-1).event_id);
    const sent = tc.sssExchanges().slice(nBefore);
    const aborted = sent.find((e) => e.requestBody?.lists?.[LIST]?.ranges?.[0]?.[1] === 2);
    const resent = sent.find((e) => e.requestBody?.lists?.[LIST]?.ranges?.[0]?.[1] === 5);
    assert.ok(aborted && resent, "an aborted request and a resend with the new ranges");
    assert.equal(resent.query.pos, aborted.query.pos, "the resend repeats the aborted request's pos");
    assert.deepEqual(tc.errors, [], "no error answers (no M_UNKNOWN_POS)");
});

test("leaving a room takes it out of the list; the SDK gets the leave, once", async () => {
    await tc.settle();
    const before = tc.responses.length;
    const { event } = await control("POST", "/lists/leave", { room_id: id("Mike") });
    await tc.waitFor(() => lastWindow()?.count === 5, () => "the list without Mike");
    assert.deepEqual(lastWindow(), { count: 5, roomIds: ids("Echo", "Kilo", "Zulu", "Oscar", "Dee") });
    await waitForEvent("Mike", event.event_id, "the leave");
    assert.equal(timelineIds("Mike").at(-1), event.event_id, "the leave is the room's last event");
    // (the SDK itself keeps such a room as joined: it marks every room it gets data for as
    // joined and applies no state from timelines)
    await tc.settle();
    const fresh = tc.responses.slice(before);
    const mikes = fresh.filter((r) => id("Mike") in r.rooms).map((r) => r.rooms[id("Mike")]);
    assert.equal(mikes.length, 1, `the leave is sent once: ${JSON.stringify(fresh.map((r) => r.rooms))}`);
    assert.deepEqual(mikes[0].timeline.map((e) => e.event_id), [event.event_id]);
    for (const field of ["name", "joined_count", "invited_count", "heroes"])
        assert.equal(mikes[0][field], undefined, `no counts or names of before the leave: ${field}`);
    assert.deepEqual(mikes[0].required_state.map((e) => e.event_id), [event.event_id],
        "of the state only the leave (matrix-rust-sdk reads the user's membership from there)");
});
