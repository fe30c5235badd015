# syncv3 build. `make` builds build/syncv3; `make SANITIZE=address,undefined`
# builds an instrumented copy into build-san/ (the tree CI tests).
#
# Profiling (SYNCV3_PPROF) uses gperftools: the plain build links libprofiler
# (CPU profiles) and tcmalloc (the allocator, and heap profiles through a few
# lines of C++, src/obs/heapsample.cc). Sanitizer builds cannot replace the
# allocator, so they link libprofiler only and answer heap requests with 501.
CC ?= cc
CXX ?= c++
SANITIZE ?=
BUILD ?= $(if $(SANITIZE),build-san,build)
PKGS := libmicrohttpd libcurl libpq jansson libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libunistring (Unicode case folding) ships no pkg-config file.
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lunistring
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
COMMIT := $(shell git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)

CFLAGS ?= -O2 -g
CFLAGS += -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Isrc $(PKG_CFLAGS) \
	-DSYNCV3_VERSION='"$(VERSION)"' -DSYNCV3_COMMIT='"$(COMMIT)"' -MMD -MP -pthread
LDLIBS += $(PKG_LIBS) -pthread -lm
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++17 -Wall -Wextra -Werror -Isrc -MMD -MP
ifneq ($(SANITIZE),)
CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=$(SANITIZE)
CXX_SRCS :=
LDLIBS += -lprofiler
else
CFLAGS += -DSYNCV3_TCMALLOC=1
CXX_SRCS := src/obs/heapsample.cc
LDLIBS += -lprofiler -ltcmalloc -lstdc++
endif

SRCS := $(sort $(wildcard src/*/*.c src/*/*/*.c))
OBJS := $(SRCS:%.c=$(BUILD)/%.o) $(CXX_SRCS:%.cc=$(BUILD)/%.o) $(BUILD)/gen/migrations.o $(BUILD)/gen/webclient.o
MIGRATIONS := $(sort $(wildcard src/store/migrations/*.sql))
WEB_CLIENT := $(sort $(wildcard web/client/*))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all unit clean test format format-check check-unsafe install
all: $(BUILD)/syncv3

# `make install` puts the binary where deploy/syncv3.service expects it.
PREFIX ?= /usr/local
install: $(BUILD)/syncv3
	install -D -m 0755 $(BUILD)/syncv3 $(DESTDIR)$(PREFIX)/bin/syncv3

$(BUILD)/syncv3: $(BUILD)/src/main.o $(BUILD)/libsyncv3.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Every table must hash alike (src/base/hash.h): only that header includes uthash.
$(BUILD)/libsyncv3.a: $(OBJS)
	@! grep -l '^#include <uthash.h>' $(SRCS) $(wildcard src/*/*.h) $(UNIT_SRCS) | grep -vx 'src/base/hash.h' || \
	  (echo "include \"base/hash.h\", not <uthash.h>, in the files above" && false)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

# Migrations are compiled into the binary as a generated C table.
$(BUILD)/gen/migrations.c: $(MIGRATIONS) scripts/embed-migrations.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-migrations.sh $(MIGRATIONS) > $@
$(BUILD)/gen/migrations.o: $(BUILD)/gen/migrations.c
	$(CC) $(CFLAGS) -c -o $@ $<

# So are the web client's files (served at /client/). The folder is a
# prerequisite too, so adding or removing a file regenerates the table.
$(BUILD)/gen/webclient.c: $(WEB_CLIENT) web/client scripts/embed-webclient.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-webclient.sh $(WEB_CLIENT) > $@.tmp && mv $@.tmp $@
$(BUILD)/gen/webclient.o: $(BUILD)/gen/webclient.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libsyncv3.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libsyncv3.a $(LDLIBS) -lcmocka

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

clean:
	rm -rf build-fuzz
	rm -rf build build-san

# clang-format with the repository's .clang-format. `make format` rewrites the
# files in place; `make format-check` only reports, per file, how many places
# it would change (never fails, and is not part of the tests).
FORMAT_FILES := src/main.c $(SRCS) $(wildcard src/*/*.h src/*/*/*.h) $(UNIT_SRCS)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run $(FORMAT_FILES) 2>&1 | grep -E '^[^ ]+:[0-9]+:[0-9]+: warning' | cut -d: -f1 | \
	  sort | uniq -c | sort -rn | awk '{n += $$1; print} END {printf "%d places clang-format would change\n", n}'

check-unsafe:
	@! grep -nE '\b(sprintf|strcpy|strcat|strtok|atoi|gets)\(' $(SRCS) || (echo "unsafe call found" && false)

-include $(OBJS:.o=.d) $(BUILD)/src/main.d

# libFuzzer drivers (clang): `make fuzz` builds them into build-fuzz/,
# `make fuzz-run FUZZ_SECS=300` runs each for that long on a copy of its seed
# corpus in tests/fuzz/corpus/<name>.
FUZZ_BUILD := build-fuzz
FUZZ_SECS ?= 300
FUZZ_CFLAGS := -O1 -g -std=c17 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Isrc $(PKG_CFLAGS) \
	-DSYNCV3_VERSION='"$(VERSION)"' -DSYNCV3_COMMIT='"$(COMMIT)"' -pthread \
	-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
FUZZ_OBJS := $(SRCS:%.c=$(FUZZ_BUILD)/%.o)
FUZZERS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))
.PHONY: fuzz fuzz-run
$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c -o $@ $<
$(FUZZ_BUILD)/libfuzz.a: $(FUZZ_OBJS)
	rm -f $@ && ar rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libfuzz.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libfuzz.a $(PKG_LIBS) -pthread -lm
fuzz: $(FUZZERS)
fuzz-run: fuzz
	@set -e; for f in $(FUZZERS); do n=$$(basename $$f | sed 's/^fuzz_//'); \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$n; cp -n tests/fuzz/corpus/$$n/* $(FUZZ_BUILD)/corpus/$$n/ 2>/dev/null || true; \
	  echo "== $$f for $(FUZZ_SECS) s"; \
	  $$f -max_total_time=$(FUZZ_SECS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    $(FUZZ_BUILD)/corpus/$$n; done
