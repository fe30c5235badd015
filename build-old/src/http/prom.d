build-old/src/http/prom.o: src/http/prom.c src/http/prom.h src/base/buf.h \
 src/base/alloc.h src/base/log.h src/http/sock.h
src/http/prom.h:
src/base/buf.h:
src/base/alloc.h:
src/base/log.h:
src/http/sock.h:
