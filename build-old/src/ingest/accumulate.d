build-old/src/ingest/accumulate.o: src/ingest/accumulate.c \
 src/ingest/accumulate.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/store/event.h \
 src/base/alloc.h src/base/buf.h src/base/clock.h src/base/log.h \
 src/store/db.h
src/ingest/accumulate.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/store/event.h:
src/base/alloc.h:
src/base/buf.h:
src/base/clock.h:
src/base/log.h:
src/store/db.h:
