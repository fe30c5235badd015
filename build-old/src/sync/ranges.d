build-old/src/sync/ranges.o: src/sync/ranges.c src/sync/ranges.h \
 src/base/alloc.h src/base/buf.h
src/sync/ranges.h:
src/base/alloc.h:
src/base/buf.h:
