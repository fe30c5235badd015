build-old/src/sync/roomname.o: src/sync/roomname.c src/sync/roomname.h \
 src/base/alloc.h src/base/buf.h
src/sync/roomname.h:
src/base/alloc.h:
src/base/buf.h:
