build-old/src/store/rooms.o: src/store/rooms.c src/store/rooms.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/store/event.h \
 src/base/alloc.h src/base/buf.h src/store/db.h
src/store/rooms.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/store/event.h:
src/base/alloc.h:
src/base/buf.h:
src/store/db.h:
