build-old/src/sync/conn.o: src/sync/conn.c src/sync/conn.h src/base/buf.h \
 src/sync/request.h src/sync/list.h src/sync/ranges.h \
 src/sync/required_state.h src/base/alloc.h src/base/clock.h \
 src/base/log.h src/cache/cache.h src/store/event.h src/store/rooms.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/http/server.h \
 src/obs/metrics.h src/store/db.h src/sync/ext.h src/sync/ops.h \
 src/sync/room.h
src/sync/conn.h:
src/base/buf.h:
src/sync/request.h:
src/sync/list.h:
src/sync/ranges.h:
src/sync/required_state.h:
src/base/alloc.h:
src/base/clock.h:
src/base/log.h:
src/cache/cache.h:
src/store/event.h:
src/store/rooms.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/http/server.h:
src/obs/metrics.h:
src/store/db.h:
src/sync/ext.h:
src/sync/ops.h:
src/sync/room.h:
