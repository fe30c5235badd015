build-old/src/base/crypto.o: src/base/crypto.c src/base/crypto.h \
 src/base/alloc.h
src/base/crypto.h:
src/base/alloc.h:
