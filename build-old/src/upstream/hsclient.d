build-old/src/upstream/hsclient.o: src/upstream/hsclient.c \
 src/upstream/hsclient.h src/base/buf.h src/base/alloc.h \
 src/base/config.h src/base/log.h
src/upstream/hsclient.h:
src/base/buf.h:
src/base/alloc.h:
src/base/config.h:
src/base/log.h:
