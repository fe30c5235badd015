build-old/src/sync/required_state.o: src/sync/required_state.c \
 src/sync/required_state.h src/base/alloc.h
src/sync/required_state.h:
src/base/alloc.h:
