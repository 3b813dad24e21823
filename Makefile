# qforge — one Makefile.  `make` builds libqforge.a and ./qforge; `make test` runs the suite;
# `make test-asan` the same under AddressSanitizer+UBSan; `make demo`; `make bench`;
# `make fuzz` builds libFuzzer targets (clang); CUDA kernels compile when nvcc exists;
# `make install PREFIX=/opt/qforge` (also DESTDIR) and `make uninstall`.
CC      ?= gcc
ifeq ($(origin CC),default)
CC      := gcc
endif
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. -MMD -MP
LDLIBS  := -ljansson -lxxhash -lpcre2-8 -lz -lm -lpthread

# The version every build reports (qforge --version, qforge.version in the files it writes):
# `git describe --always --dirty` when this directory is a git work tree's top, else the first
# word of the file VERSION, else "unknown".  $(BUILD)/version.txt changes only when it does,
# and only common/version.o depends on it.
QF_VERSION := $(strip $(shell [ "$$(git rev-parse --show-toplevel 2>/dev/null)" = "$(CURDIR)" ] && git describe --always --dirty 2>/dev/null))
ifeq ($(QF_VERSION),)
  QF_VERSION := $(firstword $(shell cat VERSION 2>/dev/null) unknown)
endif
VERSION_STAMP := $(BUILD)/version.txt
$(shell mkdir -p $(BUILD) && { echo '$(QF_VERSION)' | cmp -s - $(VERSION_STAMP) || echo '$(QF_VERSION)' > $(VERSION_STAMP); })

PREFIX  ?= /usr/local
BINDIR  := $(DESTDIR)$(PREFIX)/bin
DATADIR := $(DESTDIR)$(PREFIX)/share/qforge
DOCDIR  := $(DESTDIR)$(PREFIX)/share/doc/qforge

OPENMP_OK := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1)
ifeq ($(OPENMP_OK),1)
  override CFLAGS += -fopenmp
  override LDFLAGS += -fopenmp
endif

NVCC ?= $(shell command -v nvcc 2>/dev/null)
LIB_DIRS := common quant formats tok convert kernels kernels/cpu calib pass
LIB_SRC  := $(wildcard $(addsuffix /*.c,$(LIB_DIRS)))
ifneq ($(NVCC),)
  CUDA_SRC  := $(wildcard kernels/cuda/*.cu)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  NVCCFLAGS ?= -O2 -std=c++17 -I. -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -Xcompiler -fPIC
  NVCCFLAGS += -MMD -MP -Xcompiler -Wall,-Wextra $(if $(filter 1,$(OPENMP_OK)),-Xcompiler -fopenmp)
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcudart_static -ldl -lrt -lstdc++
  override CFLAGS += -DQF_HAVE_CUDA=1
else
  CUDA_SRC  :=
  LIB_SRC   += $(wildcard kernels/cuda/*_stub.c)
endif
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CUDA_SRC:%.cu=$(BUILD)/%.cu.o)
CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL_OBJ := $(BUILD)/tests/util/tu.o
TEST_SH_BIN := $(patsubst tests/%.sh,$(BUILD)/tests/%,$(wildcard tests/test_*.sh))
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
REPLAY_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/replay_%)

.PHONY: all deps deps-test test test-asan test-cuda demo bench fuzz clean replay install uninstall
all: deps $(BUILD)/libqforge.a qforge

deps:
	@./scripts/deps.sh

deps-test: deps
	@./scripts/deps.sh --test

$(BUILD)/libqforge.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/common/version.o: common/version.c $(VERSION_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DQF_VERSION='"$(QF_VERSION)"' -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/qforge: $(CLI_OBJ) $(BUILD)/libqforge.a
	$(CC) $(LDFLAGS) $(CLI_OBJ) $(BUILD)/libqforge.a $(CUDA_LIBS) $(LDLIBS) -o $@

qforge: $(BUILD)/qforge
	@if [ "$(BUILD)" = "build" ]; then cp $(BUILD)/qforge qforge; fi

$(BUILD)/tests/util/tu.o: tests/util/tu.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL_OBJ) $(BUILD)/libqforge.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(TEST_UTIL_OBJ) $(BUILD)/libqforge.a $(CUDA_LIBS) $(LDLIBS) -o $@

# shell tests (tests/test_*.sh) run from build/tests/ like the C ones (tests/run.sh)
$(TEST_SH_BIN): $(BUILD)/tests/%: tests/%.sh
	@mkdir -p $(@D)
	cp $< $@ && chmod +x $@

$(BUILD)/bench/%: bench/%.c $(BUILD)/libqforge.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libqforge.a $(CUDA_LIBS) $(LDLIBS) -o $@

$(BUILD)/fuzz/replay_%: tests/fuzz/%.c tests/fuzz/replay.c $(BUILD)/libqforge.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) $< tests/fuzz/replay.c $(BUILD)/libqforge.a $(CUDA_LIBS) $(LDLIBS) -o $@

test: deps-test $(BUILD)/qforge $(TEST_BIN) $(TEST_SH_BIN) $(REPLAY_BIN)
	@QF_BIN=$(BUILD)/qforge ./tests/run.sh $(BUILD)

test-asan:
	@QF_QUICK=1 ASAN_OPTIONS=detect_leaks=1 $(MAKE) --no-print-directory BUILD=build-asan NVCC= OPT=-O1 \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" test

# CUDA kernels against their CPU twins and `qforge ppl --device cuda` vs cpu (needs a GPU;
# not part of `make test`).  tests/cuda/test_*.c link like the other tests.
CUDA_TEST_BIN := $(patsubst tests/cuda/%.c,$(BUILD)/tests/cuda/%,$(wildcard tests/cuda/test_*.c))
ifeq ($(NVCC),)
test-cuda:
	@echo "make test-cuda: nvcc was not found: the CUDA kernels are not part of this build"; exit 1
else
test-cuda: $(BUILD)/qforge $(CUDA_TEST_BIN)
	@QF_BIN=$(BUILD)/qforge ./tests/cuda/run.sh $(BUILD)
endif

demo: all
	@./scripts/demo.sh

bench: all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

fuzz:
	@./tests/fuzz/build.sh

# The binary, the recipes and scripts/slurm (when present) under share/qforge, the docs under
# share/doc/qforge.  uninstall removes exactly these (the two share dirs are qforge's own).
install: $(BUILD)/qforge
	install -d $(BINDIR) $(DATADIR)/recipes $(DOCDIR)/docs
	install -m 755 $(BUILD)/qforge $(BINDIR)/qforge
	install -m 644 recipes/*.json $(DATADIR)/recipes/
	@if [ -d scripts/slurm ]; then echo "cp -R scripts/slurm $(DATADIR)/"; cp -R scripts/slurm $(DATADIR)/; fi
	install -m 644 README.md $(DOCDIR)/
	install -m 644 docs/*.md $(DOCDIR)/docs/

uninstall:
	rm -f $(BINDIR)/qforge
	rm -rf $(DATADIR) $(DOCDIR)

clean:
	rm -rf build build-asan build-fuzz qforge

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
