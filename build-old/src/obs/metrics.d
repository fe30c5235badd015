build-old/src/obs/metrics.o: src/obs/metrics.c src/obs/metrics.h \
 src/base/buf.h src/base/alloc.h src/base/log.h
src/obs/metrics.h:
src/base/buf.h:
src/base/alloc.h:
src/base/log.h:
