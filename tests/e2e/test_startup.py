"""Start-up: pollers of known devices resume with bounded concurrency, so a
restart does not send every device's initial sync to the homeserver at once."""

import time

from helpers import User, wait_until
import fakehs as F

MAX_FIRST = 16  # first polls in flight at once (poller_options.max_first_in_flight)


def test_resume_is_bounded(proxy, hs):
    users = [User(hs, "u%02d" % i) for i in range(MAX_FIRST + 6)]
    for u in users:
        u.queue(F.sync_response(join={F.new_room_id(): F.joined_room(
            F.room_state(u.user_id, "R"), [F.message(u.user_id, "m")])}))
        proxy.client(u.token).sync({})
    for u in users:
        u.wait_idle()
    counts = {u.token: len(u.syncs()) for u in users}

    proxy.stop()
    for u in users:
        hs.hold(u.token)
    proxy.start()

    def arrived():
        return [u for u in users if len(u.syncs()) > counts[u.token]]

    wait_until(lambda: len(arrived()) >= MAX_FIRST, timeout=20, what="first polls after the restart")
    time.sleep(1.0)  # give any extra (unbounded) polls time to show up
    assert len(arrived()) == MAX_FIRST, "%d first polls in flight at once" % len(arrived())
    for u in users:
        hs.release(u.token)
    wait_until(lambda: len(arrived()) == len(users), timeout=30, what="every device resumed")
    for u in users:
        first = u.syncs()[counts[u.token]]
        assert first.query["timeout"] == "0" and first.since is not None
