build-old/src/sync/ops.o: src/sync/ops.c src/sync/ops.h src/sync/list.h \
 src/sync/ranges.h src/base/alloc.h src/base/buf.h
src/sync/ops.h:
src/sync/list.h:
src/sync/ranges.h:
src/base/alloc.h:
src/base/buf.h:
