build-old/src/http/server.o: src/http/server.c src/http/server.h \
 src/base/buf.h src/base/alloc.h src/base/clock.h src/base/config.h \
 src/base/log.h src/http/sock.h
src/http/server.h:
src/base/buf.h:
src/base/alloc.h:
src/base/clock.h:
src/base/config.h:
src/base/log.h:
src/http/sock.h:
