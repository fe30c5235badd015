build-old/src/ingest/ingest.o: src/ingest/ingest.c src/ingest/ingest.h \
 src/base/alloc.h src/base/clock.h src/base/log.h src/cache/cache.h \
 src/store/event.h src/store/rooms.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/ingest/accumulate.h \
 src/obs/metrics.h src/base/buf.h src/store/db.h src/store/tokens.h \
 src/upstream/poller.h
src/ingest/ingest.h:
src/base/alloc.h:
src/base/clock.h:
src/base/log.h:
src/cache/cache.h:
src/store/event.h:
src/store/rooms.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/ingest/accumulate.h:
src/obs/metrics.h:
src/base/buf.h:
src/store/db.h:
src/store/tokens.h:
src/upstream/poller.h:
