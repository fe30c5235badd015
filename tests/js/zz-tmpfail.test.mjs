import { test } from "node:test";
import assert from "node:assert/strict";
test("deliberate failure", () => { assert.equal(1, 2); });
