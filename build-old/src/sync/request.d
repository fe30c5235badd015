build-old/src/sync/request.o: src/sync/request.c src/sync/request.h \
 src/sync/list.h src/sync/ranges.h src/sync/required_state.h \
 src/base/alloc.h
src/sync/request.h:
src/sync/list.h:
src/sync/ranges.h:
src/sync/required_state.h:
src/base/alloc.h:
