build-old/src/store/tokens.o: src/store/tokens.c src/store/tokens.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/base/alloc.h src/store/db.h \
 src/base/buf.h
src/store/tokens.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/base/alloc.h:
src/store/db.h:
src/base/buf.h:
