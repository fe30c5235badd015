build-old/src/store/extensions.o: src/store/extensions.c \
 src/store/extensions.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h src/base/alloc.h src/base/buf.h \
 src/store/db.h
src/store/extensions.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
src/base/alloc.h:
src/base/buf.h:
src/store/db.h:
