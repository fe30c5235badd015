build-old/src/cache/cache.o: src/cache/cache.c src/cache/cache.h \
 src/store/event.h src/store/rooms.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/base/alloc.h src/base/log.h
src/cache/cache.h:
src/store/event.h:
src/store/rooms.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/base/alloc.h:
src/base/log.h:
