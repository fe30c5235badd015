build-old/src/base/config.o: src/base/config.c src/base/config.h \
 src/base/log.h src/base/alloc.h
src/base/config.h:
src/base/log.h:
src/base/alloc.h:
