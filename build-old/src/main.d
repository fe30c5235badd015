build-old/src/main.o: src/main.c src/base/alloc.h src/base/config.h \
 src/base/log.h src/base/log.h src/cache/cache.h src/store/event.h \
 src/store/rooms.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/http/prom.h src/base/buf.h \
 src/http/server.h src/ingest/ingest.h src/obs/metrics.h src/store/db.h \
 src/store/migrate.h src/sync/api.h src/http/server.h \
 src/upstream/hsclient.h src/upstream/poller.h
src/base/alloc.h:
src/base/config.h:
src/base/log.h:
src/base/log.h:
src/cache/cache.h:
src/store/event.h:
src/store/rooms.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/http/prom.h:
src/base/buf.h:
src/http/server.h:
src/ingest/ingest.h:
src/obs/metrics.h:
src/store/db.h:
src/store/migrate.h:
src/sync/api.h:
src/http/server.h:
src/upstream/hsclient.h:
src/upstream/poller.h:
