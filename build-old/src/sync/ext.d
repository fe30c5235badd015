build-old/src/sync/ext.o: src/sync/ext.c src/sync/ext.h src/base/buf.h \
 src/cache/cache.h src/store/event.h src/store/rooms.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/sync/request.h \
 src/sync/list.h src/sync/ranges.h src/sync/required_state.h \
 src/base/alloc.h src/base/log.h src/store/db.h src/store/extensions.h
src/sync/ext.h:
src/base/buf.h:
src/cache/cache.h:
src/store/event.h:
src/store/rooms.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/sync/request.h:
src/sync/list.h:
src/sync/ranges.h:
src/sync/required_state.h:
src/base/alloc.h:
src/base/log.h:
src/store/db.h:
src/store/extensions.h:
