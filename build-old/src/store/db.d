build-old/src/store/db.o: src/store/db.c src/store/db.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/base/buf.h src/base/alloc.h \
 src/base/clock.h src/base/log.h
src/store/db.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/base/buf.h:
src/base/alloc.h:
src/base/clock.h:
src/base/log.h:
