build-old/src/store/migrate.o: src/store/migrate.c src/store/migrate.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/base/alloc.h src/base/log.h \
 src/store/db.h src/base/buf.h
src/store/migrate.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/base/alloc.h:
src/base/log.h:
src/store/db.h:
src/base/buf.h:
