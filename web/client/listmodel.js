// One sliding sync list as the client sees it: the list's total `count` and
// the room IDs it knows at some indexes (only the windows it asked for).
// MSC3575 servers describe changes as ops, applied in order:
//   SYNC {range:[a,b], room_ids}   the rooms at a..b (replaces what was there)
//   INVALIDATE {range:[a,b]}       forget a..b (no longer in a window)
//   DELETE {index}                 the room at index leaves; a gap opens there
//   INSERT {index, room_id}        the room goes to index; the rooms between the
//                                  open gap and index shift one place towards it
// A DELETE followed by an INSERT is a move; a DELETE with no INSERT after it
// closes its gap by shifting the rooms above it down by one.
// No DOM here: the module also runs under node (tests).

export class ListModel {
    constructor() {
        this.count = 0; // rooms in the whole list (server side)
        this.ids = new Map(); // index -> room ID, for the indexes we know
    }

    get(index) {
        return this.ids.get(index);
    }

    // [index, roomId] pairs in index order.
    entries() {
        return [...this.ids.entries()].sort((a, b) => a[0] - b[0]);
    }

    // The index of roomId, or -1.
    indexOf(roomId) {
        for (const [i, id] of this.ids) if (id === roomId) return i;
        return -1;
    }

    setCount(count) {
        this.count = count;
        for (const i of [...this.ids.keys()]) if (i >= count) this.ids.delete(i);
    }

    // Applies ops (an array of op objects; null and unknown ops are skipped).
    applyOps(ops) {
        let gap = -1; // index of a DELETE not yet followed by an INSERT
        for (const op of ops || []) {
            if (!op || typeof op !== "object") continue;
            switch (op.op) {
                case "SYNC": {
                    const [a, b] = op.range || [];
                    if (!Number.isInteger(a) || !Number.isInteger(b)) break;
                    const ids = op.room_ids || [];
                    for (let i = a; i <= b; i++) {
                        if (i - a < ids.length) this.ids.set(i, ids[i - a]);
                        else this.ids.delete(i);
                    }
                    break;
                }
                case "INVALIDATE": {
                    const [a, b] = op.range || [];
                    if (!Number.isInteger(a) || !Number.isInteger(b)) break;
                    for (let i = a; i <= b; i++) this.ids.delete(i);
                    break;
                }
                case "DELETE":
                    if (!Number.isInteger(op.index)) break;
                    if (gap !== -1) this.#close(gap);
                    this.ids.delete(op.index);
                    gap = op.index;
                    break;
                case "INSERT":
                    if (!Number.isInteger(op.index)) break;
                    if (gap === -1) this.#shift(this.#maxIndex(), op.index, +1);
                    else if (gap > op.index) this.#shift(gap - 1, op.index, +1);
                    else if (gap < op.index) this.#shift(gap + 1, op.index, -1);
                    this.ids.set(op.index, op.room_id);
                    gap = -1;
                    break;
            }
        }
        if (gap !== -1) this.#close(gap);
    }

    #maxIndex() {
        let m = -1;
        for (const i of this.ids.keys()) if (i > m) m = i;
        return m;
    }

    // Moves the entries from `from` to `to` (inclusive, walking from `from`
    // towards `to`) by `by` (+1 or -1) places. Gaps move along.
    #shift(from, to, by) {
        const step = from >= to ? -1 : 1;
        if (from < to && by > 0) return; // nothing above the gap to push up
        for (let i = from; step > 0 ? i <= to : i >= to; i += step) {
            const id = this.ids.get(i);
            this.ids.delete(i);
            if (id !== undefined) this.ids.set(i + by, id);
        }
    }

    // A gap at index with no INSERT: the known rooms above it move down one.
    #close(index) {
        const max = this.#maxIndex();
        if (max > index) this.#shift(index + 1, max, -1);
    }
}
