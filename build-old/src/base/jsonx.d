build-old/src/base/jsonx.o: src/base/jsonx.c src/base/jsonx.h \
 src/base/buf.h
src/base/jsonx.h:
src/base/buf.h:
