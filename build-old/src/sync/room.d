build-old/src/sync/room.o: src/sync/room.c src/sync/room.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/base/buf.h src/cache/cache.h \
 src/store/event.h src/store/rooms.h src/sync/required_state.h \
 src/base/alloc.h src/base/log.h src/sync/roomname.h
src/sync/room.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/base/buf.h:
src/cache/cache.h:
src/store/event.h:
src/store/rooms.h:
src/sync/required_state.h:
src/base/alloc.h:
src/base/log.h:
src/sync/roomname.h:
