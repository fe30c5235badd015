// Shared pieces of the real-client tests: a fetch that records every exchange
// with the proxy (so a failure can show exactly what was sent and answered),
// and a client for the fake homeserver's control API.
import { EventEmitter } from "node:events";
import { appendFileSync } from "node:fs";

const CAPTURE = process.env.SYNCV3_JS_CAPTURE;

export function parseMaybe(s) {
    if (typeof s !== "string") return s ?? null;
    try {
        return JSON.parse(s);
    } catch {
        return s;
    }
}

// file: a label put on each recorded exchange (omitted when null);
// onlyPath: lastExchanges() shows only exchanges on this path (all when null).
export function httpCapture({ file = null, onlyPath = null } = {}) {
    const exchanges = [];
    const httpEvents = new EventEmitter();
    let exchangeSeq = 0;

    function capturingFetch(resource, options = {}) {
        const url = new URL(resource instanceof URL || typeof resource === "string" ? resource : resource.url);
        const ex = {
            ...(file === null ? {} : { file }),
            n: ++exchangeSeq,
            method: options.method ?? "GET",
            path: url.pathname,
            query: Object.fromEntries(url.searchParams),
            requestBody: parseMaybe(options.body),
            startedAt: Date.now(),
            status: null,
            responseBody: null,
            endedAt: null,
            error: null,
        };
        exchanges.push(ex);
        httpEvents.emit("change");
        const finish = () => {
            ex.endedAt = Date.now();
            if (CAPTURE) appendFileSync(CAPTURE, JSON.stringify(ex) + "\n");
            httpEvents.emit("change");
        };
        return fetch(resource, options).then(
            async (res) => {
                ex.status = res.status;
                try {
                    ex.responseBody = parseMaybe(await res.clone().text());
                } catch (e) {
                    ex.error = "reading body: " + e;
                }
                finish();
                return res;
            },
            (err) => {
                ex.error = String(err?.name ?? "") + ": " + String(err?.message ?? err);
                finish();
                throw err;
            },
        );
    }

    function lastExchanges(n = 6) {
        return exchanges
            .filter((e) => onlyPath === null || e.path === onlyPath)
            .slice(-n)
            .map((e) => JSON.stringify(e))
            .join("\n");
    }

    return { exchanges, httpEvents, capturingFetch, lastExchanges };
}

// A request to the scenario's control API at base; throws on non-2xx.
export async function controlAt(base, method, path, body) {
    const res = await fetch(base + path, {
        method,
        headers: { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`control ${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
    return json;
}

// Resolves with the first truthy value of check(), evaluated now and whenever one of
// `emitters` ([emitter, [event names]] pairs) emits; a throw from check() rejects. After
// timeoutMs it rejects with describe() (called then, so it can show the latest state).
export function waitUntil(emitters, check, describe, timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
        const offs = [];
        const done = () => {
            clearTimeout(timer);
            for (const off of offs) off();
        };
        const evaluate = () => {
            let v;
            try {
                v = check();
            } catch (e) {
                done();
                reject(e);
                return;
            }
            if (v) {
                done();
                resolve(v);
            }
        };
        const timer = setTimeout(() => {
            done();
            reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`));
        }, timeoutMs);
        for (const [emitter, names] of emitters) {
            for (const name of names) {
                emitter.on(name, evaluate);
                offs.push(() => emitter.off(name, evaluate));
            }
        }
        evaluate();
    });
}
