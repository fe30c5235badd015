build-old/src/http/sock.o: src/http/sock.c src/http/sock.h \
 src/base/config.h src/base/log.h
src/http/sock.h:
src/base/config.h:
src/base/log.h:
