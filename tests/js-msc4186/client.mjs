// The client side of the MSC4186 real-client test: a MatrixClient started the way Element Web
// starts one for simplified sliding sync, and a fetch that plays the reverse proxy in front of
// syncv3 and the homeserver (and can lose or hold back a response on request).
//
// Element Web checks /versions for the "org.matrix.simplified_msc3575" unstable feature and
// then uses the homeserver's own base URL for sliding sync; the deployment routes that path
// (and /versions) to syncv3 and everything else to the homeserver. Here the client's base URL
// is syncv3, and routedFetch sends every other path to the fake homeserver, as
// deploy/nginx-same-host.conf does.
//
// Environment (set by tests/js/run.sh): SYNCV3_PROXY_URL, SYNCV3_HS_URL, SYNCV3_CONTROL_URL,
// SYNCV3_JS_CAPTURE (optional), SYNCV3_JS_DEBUG (optional).

import { EventEmitter } from "node:events";

import { createClient, ClientEvent, RoomEvent, SyncState } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { SlidingSync, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";
import { controlAt, httpCapture, waitUntil } from "../js/harness.mjs";

export const PROXY = process.env.SYNCV3_PROXY_URL;
export const HS = process.env.SYNCV3_HS_URL;
export const CONTROL = process.env.SYNCV3_CONTROL_URL;
export const SSS_FEATURE = "org.matrix.simplified_msc3575";
export const SSS_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
export const WAIT_MS = 30000;
const SYNCV3_PATHS = new Set([SSS_PATH, "/_matrix/client/versions"]);
const POLL_TIMEOUT_MS = 20000; // Element Web's SLIDING_SYNC_TIMEOUT_MS

// (quiet: the SDK logs the faults the tests inject, and MatrixRTC complains about state events
// of rooms it has not stored yet)
if (!process.env.SYNCV3_JS_DEBUG) {
    logger.setLevel("silent");
    logger.getChild("[MatrixRTCSessionManager]").setLevel("silent"); // child loggers start at debug
}

export const control = (method, path, body) => controlAt(CONTROL, method, path, body);
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One started client. file: the label of its lines in the HTTP capture.
export class TestClient {
    constructor(file) {
        this.cap = httpCapture({ file, onlyPath: SSS_PATH });
        this.updates = new EventEmitter(); // "update" after anything the tests wait for
        this.cap.httpEvents.on("change", () => this.updates.emit("update"));
        this.responses = []; // the sliding sync responses the SDK processed, in order
        this.errors = []; // [{httpStatus, errcode, message}] of failed sliding sync requests
        this.toDevice = []; // to-device events the client emitted (ClientEvent.ToDeviceEvent)
        this.ephemeral = []; // [{roomId, type, content}] of the m.typing / m.receipt events it emitted
        // Faults, each used once: see loseNextResponse, holdNextResponse, forgetNextPos.
        this.lose = null;
        this.hold = null;
        this.forgetPos = null;
        this.fetch = this.routedFetch.bind(this);
    }

    async routedFetch(resource, options = {}) {
        let url = new URL(resource instanceof URL || typeof resource === "string" ? resource : resource.url);
        if (url.origin === new URL(PROXY).origin && !SYNCV3_PATHS.has(url.pathname))
            url = new URL(url.pathname + url.search, HS);
        const sss = url.pathname === SSS_PATH;
        if (sss && this.forgetPos && url.searchParams.has("pos")) {
            // as if syncv3 had restarted: a position it never handed out
            url.searchParams.set("pos", "987654321");
            this.forgetPos();
            this.forgetPos = null;
        }
        const res = await this.cap.capturingFetch(url.toString(), options);
        if (!sss || res.status !== 200 || (!this.lose && !this.hold)) return res;
        const body = await res.clone().json();
        if (this.lose && this.lose.pred(body)) {
            const f = this.lose;
            this.lose = null;
            f.resolve(body);
            throw new TypeError("fetch failed (the test lost this response)");
        }
        if (this.hold && this.hold.pred(body)) {
            const f = this.hold;
            this.hold = null;
            f.resolve(body);
            await new Promise((resolve) => {
                if (options.signal.aborted) resolve();
                else options.signal.addEventListener("abort", resolve, { once: true });
            });
            throw new DOMException("This operation was aborted", "AbortError");
        }
        return res;
    }

    // The next sliding sync response matching pred(body) is thrown away after syncv3 sent it,
    // the client seeing a network error. Resolves with that body.
    loseNextResponse(pred) {
        return new Promise((resolve) => (this.lose = { pred, resolve }));
    }

    // The next sliding sync response matching pred(body) is held back until the client aborts
    // the request (it then sees an AbortError). Resolves with that body once it is held.
    holdNextResponse(pred) {
        return new Promise((resolve) => (this.hold = { pred, resolve }));
    }

    // The next sliding sync request with a pos is sent with one syncv3 never issued. Resolves
    // when that request is sent.
    forgetNextPos() {
        return new Promise((resolve) => (this.forgetPos = resolve));
    }

    // Starts a MatrixClient with a SlidingSync the way Element Web does (discovery through
    // /versions, startClient({slidingSync})). lists: {key: list params}; subscription: the
    // default room subscription. Resolves once the SDK reached SyncState.Prepared.
    async start(scenario, lists, subscription) {
        this.scenario = scenario;
        this.client = createClient({
            baseUrl: PROXY,
            accessToken: scenario.token,
            userId: scenario.user_id,
            deviceId: scenario.device_id,
            fetchFn: this.fetch,
        });
        this.supportsSss = await this.client.doesServerSupportUnstableFeature(SSS_FEATURE);
        if (!this.supportsSss) throw new Error(`/versions does not advertise ${SSS_FEATURE}`);
        this.slidingSync = new SlidingSync(
            this.client.baseUrl,
            new Map(Object.entries(lists)),
            subscription,
            this.client,
            POLL_TIMEOUT_MS,
        );
        this.slidingSync.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
            if (err) {
                this.errors.push({ httpStatus: err.httpStatus, errcode: err.errcode ?? err.data?.errcode, message: String(err.message ?? err) });
            } else if (state === SlidingSyncState.Complete && resp) {
                this.responses.push(resp);
            }
            this.updates.emit("update");
        });
        this.client.on(ClientEvent.ToDeviceEvent, (ev) => {
            this.toDevice.push({ type: ev.getType(), sender: ev.getSender(), content: ev.getContent() });
            this.updates.emit("update");
        });
        this.client.on(ClientEvent.Event, (ev) => {
            if (ev.getType() !== "m.typing" && ev.getType() !== "m.receipt") return;
            this.ephemeral.push({ roomId: ev.getRoomId(), type: ev.getType(), content: ev.getContent() });
            this.updates.emit("update");
        });
        this.client.on(RoomEvent.Timeline, () => this.updates.emit("update"));
        // (extensions the SDK runs after a response, account_data and typing/receipts, fire these)
        this.client.on(RoomEvent.Receipt, () => this.updates.emit("update"));
        this.client.on(RoomEvent.Tags, () => this.updates.emit("update"));
        this.client.on(ClientEvent.AccountData, () => this.updates.emit("update"));
        this.client.on(RoomEvent.MyMembership, () => this.updates.emit("update"));
        this.client.on(ClientEvent.Sync, () => this.updates.emit("update"));
        await this.client.startClient({ slidingSync: this.slidingSync });
        await this.waitFor(() => this.client.getSyncState() === SyncState.Syncing, () => "the SDK's first sync");
    }

    stop() {
        this.client?.stopClient();
    }

    waitFor(check, describe, timeoutMs = WAIT_MS) {
        return waitUntil(
            [[this.updates, ["update"]]],
            check,
            () =>
                `${describe()}\nclient errors: ${JSON.stringify(this.errors)}\n` +
                `latest sliding sync exchanges with the proxy:\n${this.cap.lastExchanges()}`,
            timeoutMs,
        );
    }

    sssExchanges() {
        return this.cap.exchanges.filter((e) => e.path === SSS_PATH);
    }

    // Waits until the proxy has handled everything queued upstream for this user and the SDK
    // has its next long-poll in flight, so that what is queued next arrives live.
    async settle() {
        await control("POST", "/wait_idle", { token: this.scenario.token, timeout: 20 });
        const lastEnd = Math.max(0, ...this.sssExchanges().map((e) => e.endedAt ?? 0));
        await this.waitFor(
            () => this.sssExchanges().some((e) => e.query.pos && e.endedAt === null && e.startedAt >= lastEnd),
            () => "a sliding sync long-poll in flight",
        );
        await sleep(200); // let it reach syncv3 and park there
    }
}
