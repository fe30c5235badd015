build-old/src/sync/api.o: src/sync/api.c src/sync/api.h src/http/server.h \
 src/base/buf.h src/base/alloc.h src/base/clock.h src/base/config.h \
 src/base/log.h src/base/crypto.h src/cache/cache.h src/store/event.h \
 src/store/rooms.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/ingest/ingest.h \
 src/obs/metrics.h src/store/db.h src/store/tokens.h src/sync/conn.h \
 src/sync/request.h src/sync/list.h src/sync/ranges.h \
 src/sync/required_state.h src/sync/ext.h src/upstream/hsclient.h \
 src/upstream/poller.h
src/sync/api.h:
src/http/server.h:
src/base/buf.h:
src/base/alloc.h:
src/base/clock.h:
src/base/config.h:
src/base/log.h:
src/base/crypto.h:
src/cache/cache.h:
src/store/event.h:
src/store/rooms.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/ingest/ingest.h:
src/obs/metrics.h:
src/store/db.h:
src/store/tokens.h:
src/sync/conn.h:
src/sync/request.h:
src/sync/list.h:
src/sync/ranges.h:
src/sync/required_state.h:
src/sync/ext.h:
src/upstream/hsclient.h:
src/upstream/poller.h:
