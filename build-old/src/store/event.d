build-old/src/store/event.o: src/store/event.c src/store/event.h \
 src/base/alloc.h
src/store/event.h:
src/base/alloc.h:
