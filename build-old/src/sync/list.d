build-old/src/sync/list.o: src/sync/list.c src/sync/list.h \
 src/base/alloc.h src/sync/roomname.h
src/sync/list.h:
src/base/alloc.h:
src/sync/roomname.h:
