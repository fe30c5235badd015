build-old/src/upstream/poller.o: src/upstream/poller.c \
 src/upstream/poller.h src/base/alloc.h src/base/buf.h src/base/clock.h \
 src/base/config.h src/base/log.h src/base/jsonx.h \
 src/upstream/hsclient.h
src/upstream/poller.h:
src/base/alloc.h:
src/base/buf.h:
src/base/clock.h:
src/base/config.h:
src/base/log.h:
src/base/jsonx.h:
src/upstream/hsclient.h:
