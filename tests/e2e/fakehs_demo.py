"""The demo script of the fake homeserver (`python3 tests/e2e/fakehs.py --script demo`).

Two users, alice and bob (tokens syt_demo_alice, syt_demo_bob). Alice is in 60 named rooms (bob
in about a third of them), a DM with bob, and has an invite from carol; some rooms have avatars (small
SVGs served as thumbnails), every room has 40 older messages behind its prev_batch (for
/messages), a message is sent every `interval` seconds, and a message sent through PUT /send
reaches every member of the room, so the web client at syncv3's /client/ can be tried end to end.
With interval None (tests/js/scenario.py, for the browser test) nothing is sent by itself.
"""

import itertools
import threading

import fakehs as F

DEMO_SERVER = "localhost"
DEMO_USERS = {
    # token: (user_id, device_id, displayname)
    "syt_demo_alice": ("@alice:" + DEMO_SERVER, "ALICEDEMO", "Alice"),
    "syt_demo_bob": ("@bob:" + DEMO_SERVER, "BOBDEMO", "Bob"),
}
DEMO_CHATTER = [
    "Has anyone seen the release notes?", "Lunch at noon?", "The build is green again.",
    "I pushed a fix for the flaky test.", "Coffee?", "Who owns the staging box?",
    "Reminder: standup in 5 minutes.", "Nice work on the migration!", "Can you review my PR?",
    "The metrics dashboard looks good.",
]
FIRST_ROOMS = ["General", "Random", "Engineering", "Design", "Ops", "Release planning", "Book club",
               "Bikes", "Music"]
AREAS = ["Frontend", "Backend", "Infra", "Security", "Mobile", "Data", "Support", "Docs", "Hiring",
         "Berlin office", "Lisbon office", "Community", "Research"]
KINDS = ["chat", "standup", "alerts", "reviews"]
N_ROOMS = 60
BOB_ROOMS = (1, 3, 5, 7)  # rooms bob created (the rest are alice's)
HISTORY = 40
COLOURS = ["#3b82f6", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6", "#6366f1"]


def describe():
    """What the browser test needs to know of alice's demo rooms: room IDs and names in the
    order of their activity (newest first; the DM and the invite come before them)."""
    uid, dev, _ = DEMO_USERS["syt_demo_alice"]
    return {"token": "syt_demo_alice", "user_id": uid, "device_id": dev, "history": HISTORY,
            "rooms": [{"room_id": "!demo%d:%s" % (i, DEMO_SERVER), "name": n,
                       "has_avatar": i % 3 != 1, "history_prefix": "%s, older message" % n,
                       "shared_with_bob": i in BOB_ROOMS or i % 3 == 0 or i < 6}
                      for i, n in enumerate(room_names())],
            "count": N_ROOMS + 2}


def room_names():
    extra = ["%s %s" % (a, k) for k in KINDS for a in AREAS]
    return (FIRST_ROOMS + extra)[:N_ROOMS]


def avatar_svg(i):
    """A small square picture: a coloured background with a light shape (different per room)."""
    bg = COLOURS[i % len(COLOURS)]
    shapes = ['<circle cx="32" cy="32" r="16" fill="#fff" fill-opacity=".85"/>',
              '<path d="M32 14 L50 48 L14 48 Z" fill="#fff" fill-opacity=".85"/>',
              '<rect x="17" y="17" width="30" height="30" rx="6" fill="#fff" fill-opacity=".85"/>']
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
            '<rect width="64" height="64" fill="%s"/>%s</svg>' % (bg, shapes[i % len(shapes)])).encode()


def display(user):
    return user[1:].split(":")[0].capitalize()


def run_demo(hs, interval):
    alice, bob = "@alice:" + DEMO_SERVER, "@bob:" + DEMO_SERVER
    tokens = {}
    for token, (uid, dev, _) in DEMO_USERS.items():
        hs.register(token, uid, dev)
        tokens[uid] = token
    rooms = {}  # room_id -> members
    joins = {alice: {}, bob: {}}
    start = F.now_ts() - (HISTORY + 10) * 60_000
    # Created from the last name to the first, so General has the newest activity.
    for i, n in reversed(list(enumerate(room_names()))):
        rid = "!demo%d:%s" % (i, DEMO_SERVER)
        # alice is in every room; bob made a few of them and is in a third of the rest.
        creator = bob if i in BOB_ROOMS else alice
        other = bob if creator == alice else alice
        members = [creator] + ([other] if creator == bob or i % 3 == 0 or i < 6 else [])
        avatar = None
        if i % 3 != 1:
            avatar = "mxc://%s/avatar%d" % (DEMO_SERVER, i)
            hs.add_media(DEMO_SERVER, "avatar%d" % i, avatar_svg(i), "image/svg+xml")
        st = F.room_state(creator, n, encrypted=(n == "Ops"), avatar_url=avatar, ts=start)
        st[1]["content"]["displayname"] = display(creator)
        st.append(F.topic(creator, "Everything about %s" % n.lower(), ts=start))
        if len(members) > 1:
            st.append(F.join(other, displayname=display(other), ts=start))
        older = [F.message(members[k % len(members)], "%s, older message %d" % (n, k + 1),
                           ts=start + k * 60_000) for k in range(HISTORY)]
        hs.add_history(rid, "p_demo_%d" % i, older)
        tl = [F.message(creator, "Welcome to %s!" % n), F.message(members[-1], DEMO_CHATTER[i % 10])]
        rooms[rid] = members
        for m in members:
            joins[m][rid] = F.joined_room(st, tl, prev_batch="p_demo_%d" % i,
                                          notification_count=(1 if m != members[-1] else 0),
                                          highlight_count=(1 if i == 3 and m == alice else 0))
    # a DM between alice and bob
    dm = "!demodm:" + DEMO_SERVER
    dm_state = [F.create(alice), F.join(alice, displayname="Alice"), F.power_levels(alice),
                F.join_rules(alice, "invite"), F.invite(alice, bob, is_direct=True),
                F.join(bob, displayname="Bob")]
    dm_tl = [F.message(bob, "hey alice, got a minute?")]
    rooms[dm] = [alice, bob]
    for m in (alice, bob):
        joins[m][dm] = F.joined_room(dm_state, dm_tl, prev_batch="p_demo_dm", notification_count=1)
    direct = {alice: F.account_data("m.direct", {bob: [dm]}),
              bob: F.account_data("m.direct", {alice: [dm]})}
    # an invite for alice from a third user
    inv_room = "!demoinvite:" + DEMO_SERVER
    inv_state = F.invite_to("@carol:" + DEMO_SERVER, alice, room_name="Carol's party")
    for token, (uid, _, _) in DEMO_USERS.items():
        body = F.sync_response(join=joins[uid], account_data=[direct[uid]])
        if uid == alice:
            body["rooms"]["invite"] = {inv_room: F.invited_room(inv_state)}
        hs.queue(token, body)

    unread = {}  # (user, room) -> notification count

    def deliver(rid, ev, skip_token=None):
        """Queues ev for every member of rid except the one whose token is skip_token."""
        for uid in rooms.get(rid, ()):
            if tokens[uid] == skip_token:
                continue
            counts = {}
            if uid != ev["sender"]:
                unread[(uid, rid)] = unread.get((uid, rid), 0) + 1
                counts = {"notification_count": unread[(uid, rid)]}
            hs.queue(tokens[uid], F.sync_response(join={rid: F.joined_room(timeline=[ev], **counts)}))

    # The sender's own copy (with its transaction ID) is queued by the fake homeserver itself.
    hs.on_send = lambda token, rid, ev: deliver(rid, ev, skip_token=token)

    stop = threading.Event()
    if not interval:
        return stop

    def chatter():
        for n in itertools.count():
            if stop.wait(interval):
                return
            rid = list(rooms)[(n * 7) % len(rooms)]
            members = rooms[rid]
            deliver(rid, F.message(members[n % len(members)], DEMO_CHATTER[n % len(DEMO_CHATTER)]))
    threading.Thread(target=chatter, name="demo-chatter", daemon=True).start()
    return stop
