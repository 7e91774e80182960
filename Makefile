# quill: one plain Makefile.  `make help` lists the targets.
#
#   make            build bin/quill, the library (lib/libquill.so, lib/libquill.a,
#                   lib/pkgconfig/quill.pc) and the notebooks (installs missing Debian packages first)
#   make install    install include/quill.h, the libraries and quill.pc under PREFIX (/usr/local)
#   make uninstall  remove what make install put under PREFIX
#   make notebooks  build the notebooks (notebooks-c/) and run each one in turn
#   make test       build and run every Criterion test, ABI test (tests/abi/) and node test
#                   (tests/node/: the openai client, the page in Chromium, quill serve's load
#                   test), the Python binding's (bindings/python, pytest) and the Node.js
#                   binding's (bindings/node); check make install
#   make check      the unit tests and the load test under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo       train a small model on a local corpus for about a minute, then generate
#   make bench      machine peaks (sgemm GFLOP/s, memory GB/s), training throughput,
#                   inference speed (make bench-inference: pp128/tg64 of F32, Q8_0, Q4_0, Q4_K_M)
#                   quill serve beside llama-server (make bench-serve) and decoding with a
#                   JSON grammar beside without, in quill and llama-cli (make bench-grammar)
#                   and LoRA fine-tuning beside PyTorch (make bench-finetune)
#   make bench-data the data pipeline (word counts, BPE 8192, token cache) on a generated
#                   1 GB corpus: time, MB/s and peak memory (BENCH_DATA_MB to change the size)
#   make fuzz       run each libFuzzer harness for FUZZ_SECONDS (default 20; make test does too)
#
# Switches:
#   BLAS=none       use the naive reference matmul in src/matmul.c instead of OpenBLAS
#   SANITIZE=1      build with ASan + UBSan (what `make check` does, in its own build dir)

# `make` alone builds `all`, whatever rule comes first below.
.DEFAULT_GOAL := all

CC       := gcc
BLAS     ?= openblas
SANITIZE ?= 0

# Each variant builds into its own directory so that objects never mix.
ifeq ($(SANITIZE),1)
  BUILD := build/check
else ifeq ($(BLAS),none)
  BUILD := build/noblas
else
  BUILD := build/release
endif

# -O3 for vectorised loops; -march=native because quill is built where it runs.
# Never -ffast-math: tests compare against outside references bit for bit where they can,
# and float reductions that need reassociation say so with `#pragma omp simd reduction`.
# -fno-math-errno changes no result: it only stops sqrtf() from setting errno, which
# forced a branch and a library call into every loop that takes a square root.
# -Wno-missing-field-initializers: tables such as a command's flags list the first fields of
# each entry and leave the rest zero, which C defines and -Wextra would flag.
CFLAGS   := -std=c11 -O3 -march=native -g -fopenmp -fno-math-errno -Wall -Wextra -Wshadow \
            -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
            -Wno-missing-field-initializers
# The library (lib/libquill.so) is built from the same objects as the static one and the
# binary, so every object is position-independent (-fPIC) and hides its names
# (-fvisibility=hidden): the shared library exports only what include/quill.h marks QUILL_API.
# -fno-semantic-interposition lets calls inside the library to those exported functions go
# straight to them, as in a program. Measured: no cost to the binary's speed (the
# architecture's "The library" section).
CFLAGS   += -fPIC -fvisibility=hidden -fno-semantic-interposition
CPPFLAGS := -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -MMD -MP
LDFLAGS  := -fopenmp
# cJSON reads configs; xxHash checksums files; PCRE2 (8-bit code units, i.e. UTF-8) runs the
# byte-level BPE pre-tokenizer patterns, which need Unicode properties (\p{L}, \p{N});
# libedit gives the REPL line editing and history on a terminal; GNU libmicrohttpd is
# quill serve's HTTP.
# Open MPI runs data-parallel training (train/distributed.c); its flags come from
# pkg-config when they are used, after `make deps` has installed it.
MPI_CPPFLAGS = $(shell pkg-config --cflags ompi-c)
MPI_LIBS     = $(shell pkg-config --libs ompi-c)
# The library's own dependencies (dl: OpenBLAS is loaded at run time, src/openblas.h);
# libedit and MPI belong to the command-line program alone.
LIB_LIBS  = -lcjson -lxxhash -lpcre2-8 -ldl -lm
LDLIBS    = -ledit -lmicrohttpd $(MPI_LIBS) $(LIB_LIBS)

# OpenBLAS comes in two Debian builds with the same API: one runs its own pthreads, one
# runs on OpenMP. quill's element-wise loops use OpenMP, so it uses the OpenMP build:
# one pool of threads, instead of two pools spinning against each other for the same
# cores (measured here: 1.5-4x slower training with the pthread build). Nothing links it:
# src/openblas.c loads it on first use, after choosing its kernel (src/openblas.h says why).
MULTIARCH     := $(shell $(CC) -print-multiarch)
OPENBLAS_OMP  := /usr/lib/$(MULTIARCH)/openblas-openmp
ifeq ($(BLAS),none)
  CPPFLAGS += -DQUILL_BLAS_NONE
endif
$(BUILD)/src/openblas.o: CPPFLAGS += -DQUILL_OPENBLAS_PATH='"$(OPENBLAS_OMP)/libopenblas.so.0"'

# Attention's tile kernel (src/attention.c) writes `acc += a * b` on vectors and needs it
# to be one fused multiply-add: twice the arithmetic per instruction, and one rounding
# instead of two. In ISO C mode (-std=c11) GCC keeps the multiply and the add apart unless
# told otherwise; the file's results stay independent of the thread count either way.
$(BUILD)/src/attention.o: CFLAGS += -ffp-contract=fast

# quill serve's playground page is compiled into the binary, so that `quill serve` alone
# serves it wherever the binary is copied: each file of generate/playground/ becomes a C
# array of its bytes, named after the file (index.html: index_html[]), written in hex by od
# (coreutils; -v writes every line, where od would fold repeated ones into a '*') into
# playground.inc, which generate/serve_page.c includes. A change to a page file rebuilds it.
PLAYGROUND_FILES := generate/playground/index.html generate/playground/playground.js \
                    generate/playground/playground.css
PLAYGROUND_INC   := $(BUILD)/generate/playground.inc
$(PLAYGROUND_INC): $(PLAYGROUND_FILES)
	@mkdir -p $(dir $@)
	@for f in $^; do \
	  printf 'static const unsigned char %s[] = {\n' "$$(basename $$f | tr . _)"; \
	  od -An -v -tx1 $$f | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  printf '};\n'; \
	done > $@.tmp && mv $@.tmp $@
$(BUILD)/generate/serve_page.o: $(PLAYGROUND_INC)
$(BUILD)/generate/serve_page.o: CPPFLAGS += -I$(BUILD)/generate

# mpi.h is included by train/distributed.c alone.
$(BUILD)/train/distributed.o: CPPFLAGS += $(MPI_CPPFLAGS)

ifeq ($(SANITIZE),1)
  CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

# src/openblas.c loads OpenBLAS: not part of a build without it.
SRC_C      := $(filter-out $(if $(filter none,$(BLAS)),src/openblas.c),$(wildcard src/*.c))
TRAIN_C    := $(wildcard train/*.c)
GENERATE_C := $(wildcard generate/*.c)
TEST_C     := $(wildcard tests/*.c)
NOTEBOOK_C := $(wildcard notebooks-c/*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

# The library: lib/ for the default build, its own folder for the others (BLAS=none,
# SANITIZE=1). The shared one is named by its version, with the links a linker and a loader
# look for: libquill.so -> libquill.so.0 (the soname: the major version, which changes
# when a release breaks the ABI) -> libquill.so.0.1.0, the version include/quill.h states.
QUILL_VERSION := $(shell sed -n 's/^\#define QUILL_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' \
                   include/quill.h | paste -sd.)
SO_MAJOR   := $(firstword $(subst ., ,$(QUILL_VERSION)))
LIBDIR     := $(if $(filter build/release,$(BUILD)),lib,$(BUILD)/lib)
LIB        := $(LIBDIR)/libquill.a
SO_REAL    := $(LIBDIR)/libquill.so.$(QUILL_VERSION)
SO         := $(LIBDIR)/libquill.so
PC         := $(LIBDIR)/pkgconfig/quill.pc
CMD_OBJS   := $(call obj,$(TRAIN_C) $(GENERATE_C))
QUILL      := $(BUILD)/quill
TESTS      := $(BUILD)/quill-tests
NOTEBOOKS  := $(patsubst notebooks-c/%.c,$(BUILD)/notebooks/%,$(NOTEBOOK_C))

# python3-jsonschema: the independent validator that tests/test_json_schema.c runs on what
# quill generate --json-schema writes.
DEB_PACKAGES := libopenblas-dev libopenblas-openmp-dev libcjson-dev libcriterion-dev libxxhash-dev \
                libpcre2-dev libedit-dev libopenmpi-dev openmpi-bin fortunes clang \
                libclang-rt-dev libomp-dev libmicrohttpd-dev nodejs npm chromium python3-jsonschema time

.PHONY: all deps test test-unit test-abi test-node test-node-binding test-python test-install \
        test-load install uninstall \
        check demo bench bench-data bench-inference bench-serve bench-grammar bench-finetune clean help probe fuzz notebooks

all: deps probe bin/quill $(SO) $(PC) $(NOTEBOOKS)

help:
	@sed -n '3,24p' Makefile | sed 's/^# \{0,1\}//'

# Installs the Debian packages quill needs when they are missing: with apt-get as root,
# otherwise it prints the exact command and stops. Every object waits for it (an
# order-only prerequisite: `| deps` below), so that with any -jN no compiler starts before
# the headers are there. Another apt-get at work (a fresh machine's unattended upgrades) is
# waited for, up to APT_WAIT seconds: apt-get install waits for dpkg's lock itself
# (DPkg::Lock::Timeout), but apt-get update fails at once while another holds the package
# lists' lock, so it is tried again every 5 s.
# A package counts as there when an installed package provides it: NodeSource's nodejs
# brings its own npm (and conflicts with Debian's), as Debian's does not.
APT_WAIT := 600
deps:
	@missing=""; \
	provided=$$(dpkg-query -W -f='$${Status}|$${Provides}\n' 2>/dev/null | \
	  sed -n 's/^install ok installed|//p' | tr ',' '\n' | sed 's/ *(.*//; s/^ *//'); \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || \
	    printf '%s\n' "$$provided" | grep -qx "$$p" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing$$missing"; \
	    waited=0; \
	    until out=$$(apt-get update -qq 2>&1); do \
	      case "$$out" in *"Could not get lock"*) ;; *) echo "$$out"; exit 1;; esac; \
	      if [ $$waited -ge $(APT_WAIT) ]; then echo "$$out"; exit 1; fi; \
	      if [ $$waited = 0 ]; then echo "deps: another apt-get is at work: waiting for it"; fi; \
	      sleep 5; waited=$$((waited + 5)); \
	    done; \
	    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=$(APT_WAIT) install -y -qq$$missing \
	      >/dev/null || exit 1; \
	  else \
	    echo "deps: missing Debian packages:$$missing"; \
	    echo "deps: run  sudo apt-get install -y$$missing  and then make again"; exit 1; \
	  fi; \
	fi

# Prints what the build will use (after deps, which may install it).
probe: deps
	@printf 'OpenBLAS: '; if [ "$(BLAS)" = none ]; then echo "off (BLAS=none, naive reference matmul)"; \
	  elif [ -e $(OPENBLAS_OMP)/libopenblas.so ]; then echo "yes, OpenMP build ($(OPENBLAS_OMP))"; \
	  else echo "no (make deps installs libopenblas-openmp-dev)"; fi
	@printf 'CUDA:     '; if command -v nvcc >/dev/null; then echo "nvcc found (no CUDA backend in this version)"; else echo no; fi

bin/quill: $(QUILL)
	@mkdir -p bin
	cp $< $@

$(LIB): $(call obj,$(SRC_C))
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

# The shared library links its own dependencies, so that a client links -lquill -lm alone;
# --no-undefined makes a missing one an error here rather than in the client (not under the
# sanitizers, whose runtime the program that loads the library brings).
SO_LDFLAGS := -shared -Wl,-soname,libquill.so.$(SO_MAJOR) -Wl,--as-needed \
              $(if $(filter 1,$(SANITIZE)),,-Wl,--no-undefined)
$(SO_REAL): $(call obj,$(SRC_C))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(SO_LDFLAGS) -o $@ $^ $(LIB_LIBS)

$(SO): $(SO_REAL)
	ln -sf $(notdir $<) $(LIBDIR)/libquill.so.$(SO_MAJOR)
	ln -sf libquill.so.$(SO_MAJOR) $@

# pkg-config's description of the library under a prefix ($(1)), its libraries in the
# folder $(2) below it: the build's own (this checkout, for trying the library before
# installing it) or an installed one (make install).
define quill_pc
prefix=$(1)
includedir=$${prefix}/include
libdir=$${prefix}/$(2)

Name: quill
Description: quill's language-model engine (load, tokenize, decode, sample, train)
Version: $(QUILL_VERSION)
Cflags: -I$${includedir}
Libs: -L$${libdir} -lquill
Libs.private: -fopenmp $(LIB_LIBS)
endef
export PC_BUILD   = $(call quill_pc,$(CURDIR),$(LIBDIR))
export PC_INSTALL = $(call quill_pc,$(PREFIX),lib)

$(PC): Makefile
	@mkdir -p $(dir $@)
	printf '%s\n' "$$PC_BUILD" > $@

# make install PREFIX=... (and DESTDIR=... for a package's staging folder).
PREFIX ?= /usr/local
INSTALL_LIB := $(DESTDIR)$(PREFIX)/lib
install: $(LIB) $(SO)
	install -d $(DESTDIR)$(PREFIX)/include $(INSTALL_LIB)/pkgconfig
	install -m 644 include/quill.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(LIB) $(INSTALL_LIB)/
	install -m 755 $(SO_REAL) $(INSTALL_LIB)/
	ln -sf libquill.so.$(QUILL_VERSION) $(INSTALL_LIB)/libquill.so.$(SO_MAJOR)
	ln -sf libquill.so.$(SO_MAJOR) $(INSTALL_LIB)/libquill.so
	printf '%s\n' "$$PC_INSTALL" > $(INSTALL_LIB)/pkgconfig/quill.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/quill.h $(INSTALL_LIB)/libquill.a \
	  $(INSTALL_LIB)/libquill.so $(INSTALL_LIB)/libquill.so.$(SO_MAJOR) \
	  $(INSTALL_LIB)/libquill.so.$(QUILL_VERSION) $(INSTALL_LIB)/pkgconfig/quill.pc

$(QUILL): $(BUILD)/main.o $(CMD_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TESTS): $(call obj,$(TEST_C)) $(CMD_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

# Notebooks may use the generation side's sampler as well as the library.
$(BUILD)/notebooks/%: $(BUILD)/notebooks-c/%.o $(CMD_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Each notebook prints what it teaches; those that read ../shared say so when a file is
# missing and end without failing.
notebooks: deps $(NOTEBOOKS)
	@for nb in $(NOTEBOOKS); do echo "==== $$nb"; $$nb || exit 1; echo; done

# make rebuilds what is older than its sources, not what was compiled with other flags: a
# build folder from before a change of CFLAGS (-fPIC for the shared library, say) would
# keep objects that no longer link. So the flags are written to a file that changes only
# when they do, and every object depends on it.
FLAGS_FILE := $(BUILD)/compile-flags
$(FLAGS_FILE): FORCE
	@mkdir -p $(dir $@)
	@echo '$(CC) $(CPPFLAGS) $(CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CPPFLAGS) $(CFLAGS)' > $@

$(BUILD)/%.o: %.c $(FLAGS_FILE) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

FORCE:

# The tests run the `quill` binary and the notebooks of the same build (for the command-line
# cases and the notebooks' printed facts), then the ABI tests; then an install is checked
# (test-install), and every fuzz harness runs for FUZZ_SECONDS, so each parser is fuzzed on
# every run of CI.
test: test-unit
	$(MAKE) --no-print-directory test-node
	$(MAKE) --no-print-directory test-node-binding
	$(MAKE) --no-print-directory test-python
	$(MAKE) --no-print-directory test-install
	$(MAKE) --no-print-directory test-load
	$(MAKE) --no-print-directory -j2 fuzz

test-unit: deps $(TESTS) $(QUILL) $(NOTEBOOKS)
	QUILL_BIN=$(QUILL) QUILL_NOTEBOOKS=$(BUILD)/notebooks $(TESTS) --jobs 2
	$(MAKE) --no-print-directory test-abi

# quill serve under load (tests/node/serve_load.test.mjs, Node's built-ins alone, no npm):
# 16 clients x 10 requests on stories260K with --parallel 4, a quarter of the streams cut;
# every usage right, no slot left busy, the resident memory steady, a clean SIGTERM. Node
# reports a missing ../shared model as a skip, a failure under CI=true.
test-load: deps $(QUILL)
	QUILL_BIN=$(QUILL) node --test tests/node/serve_load.test.mjs

# ---- the ABI tests ----
# Each tests/abi/NAME.c is a client of the library as a user writes one: it sees only the
# public header (-Iinclude, no -Isrc) and links only the shared library (and -lm), found
# through an rpath to the build's folder. Each runs from the repository's root; exit 0 is
# a pass, 77 a skip (a missing ../shared model: it prints SKIP), which fails under CI=true.
ABI_C    := $(wildcard tests/abi/*.c)
ABI_BINS := $(patsubst tests/abi/%.c,$(BUILD)/abi/%,$(ABI_C))
ABI_CFLAGS := -std=c11 -O2 -g -pthread -Wall -Wextra
ifeq ($(SANITIZE),1)
  ABI_CFLAGS += -fsanitize=address,undefined
endif

$(BUILD)/abi/%: tests/abi/%.c include/quill.h $(SO)
	@mkdir -p $(dir $@)
	$(CC) $(ABI_CFLAGS) -Iinclude -o $@ $< -L$(LIBDIR) -Wl,-rpath,$(CURDIR)/$(LIBDIR) -lquill -lm

# First the library's surface: it must export the quill_* functions alone (the toolchain
# adds _init and _fini), and need neither libedit nor MPI, the command-line program's.
test-abi: $(SO) $(ABI_BINS)
	@extra=$$(nm -D --defined-only $(SO_REAL) | awk '$$3 !~ /^(quill_|_init$$|_fini$$)/'); \
	if [ -n "$$extra" ]; then echo "abi: $(SO_REAL) exports more than quill_*:"; \
	  echo "$$extra"; exit 1; fi
	@if ldd $(SO_REAL) | grep -E 'libedit|libmpi'; then \
	  echo "abi: $(SO_REAL) needs the command-line program's libraries"; exit 1; fi
	@echo "abi: $(SO_REAL) exports $$(nm -D --defined-only $(SO_REAL) | grep -c ' quill_') quill_* functions and nothing else"
	@failed=0; for t in $(ABI_BINS); do \
	  $$t; rc=$$?; \
	  if [ $$rc = 0 ]; then echo "abi $$t: ok"; \
	  elif [ $$rc = 77 ] && [ "$${CI:-}" != true ]; then echo "abi $$t: SKIP"; \
	  else echo "abi $$t: FAILED (exit status $$rc)"; failed=1; fi; \
	done; exit $$failed

# ---- the node tests ----
# tests/node/openai.test.mjs and playground.test.mjs drive `quill serve` with client
# software written elsewhere: OpenAI's official client (`openai`) and a headless Chromium
# (Debian's) through `puppeteer-core`, both from the npm registry at the versions
# tests/node/package-lock.json pins, run by node's own test runner. The Node.js binding
# (bindings/node) needs `koffi`, pinned the same way. npm ci installs a folder's packages
# into its node_modules when the lock file is newer than its last install. Without the
# registry, and so without node_modules, the tests are a SKIP, which fails under CI=true
# (as the ABI tests' skips do).
NODE_DIR     := tests/node
NODE_TESTS   := $(NODE_DIR)/openai.test.mjs $(NODE_DIR)/playground.test.mjs
NODE_BINDING := bindings/node

%/node_modules/.package-lock.json: %/package-lock.json
	cd $* && npm ci --no-audit --no-fund --fetch-retries=1 --loglevel=error
	@touch $@

# $(call npm_ci_or_skip,FOLDER,SUITE): shell lines that install FOLDER's packages, or end
# the recipe with SUITE's SKIP (a failure under CI=true) when they cannot be installed.
npm_ci_or_skip = \
	if ! $(MAKE) --no-print-directory $(1)/node_modules/.package-lock.json; then \
	  echo "$(2): SKIP: npm ci could not install $(1)/node_modules (is the npm registry reachable?)"; \
	  if [ "$${CI:-}" = true ]; then echo "$(2): FAILED: CI needs the $(2) tests"; exit 1; fi; \
	  exit 0; \
	fi

test-node: deps bin/quill
	@$(call npm_ci_or_skip,$(NODE_DIR),node); \
	QUILL_BIN=bin/quill node --test --test-reporter=spec --test-timeout=120000 $(NODE_TESTS)

# The binding's tests (bindings/node/test/) compare what it generates with bin/quill's
# output; they load lib/libquill.so from the checkout.
test-node-binding: deps bin/quill $(SO)
	@$(call npm_ci_or_skip,$(NODE_BINDING),node binding); \
	QUILL_BIN=bin/quill node --test --test-reporter=spec --test-timeout=120000 \
	  $(NODE_BINDING)/test/*.test.js

# ---- the Python binding ----
# bindings/python (the package quill: ctypes over lib/libquill.so) under pytest, run on the
# source tree against this build's library and `quill` (its texts are compared with the
# command line's). Debian's interpreter is named by its path, where make deps installs
# python3-pytest, python3-matplotlib (the example's plots) and python3-setuptools and
# python3-pip (the install test): a python3 earlier on PATH (pyenv's, a venv) lacks them.
# Without an interpreter that has pytest the suite is a SKIP, which fails under CI=true.
PYTHON ?= /usr/bin/python3

test-python: deps $(SO) bin/quill
	@if ! $(PYTHON) -c 'import pytest' 2>/dev/null; then \
	  echo "python: SKIP: $(PYTHON) cannot import pytest (make deps installs python3-pytest)"; \
	  if [ "$${CI:-}" = true ]; then echo "python: FAILED: CI needs the Python tests"; exit 1; fi; \
	  exit 0; \
	fi; \
	QUILL_BIN=$(CURDIR)/bin/quill $(PYTHON) -m pytest -q -p no:cacheprovider bindings/python

# make install into a temporary prefix, then a client built with nothing but what
# pkg-config says (tests/install/client.c) and run.
test-install: $(LIB) $(SO)
	@prefix=$$(mktemp -d /tmp/quill-install-XXXXXX) && trap 'rm -rf "$$prefix"' EXIT && \
	$(MAKE) --no-print-directory install PREFIX=$$prefix >/dev/null && \
	flags=$$(PKG_CONFIG_PATH=$$prefix/lib/pkgconfig pkg-config --cflags --libs quill) && \
	$(CC) -std=c11 -o $$prefix/client tests/install/client.c $$flags -lm && \
	LD_LIBRARY_PATH=$$prefix/lib $$prefix/client && \
	echo "install: make install, pkg-config --cflags --libs quill ($$flags) and a client: ok"

# ---- fuzzing ----
# libFuzzer harnesses (tests/fuzz/fuzz_*.c), built with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer over their own build of the library (the reference matmul:
# the harnesses never multiply). Seeds are files quill writes itself (tests/fuzz/fuzz_seeds.c)
# and the configs in configs/; the inputs found are kept in build/fuzz/corpus; inputs
# that once crashed live in tests/fuzz/regressions/NAME/ and are replayed on every run.
# Each input is limited to 5 s and 2 GB, so a hang or a memory blow-up fails like a crash,
# and a failure prints the command that reproduces it.
FUZZ_SECONDS ?= 20
FUZZERS      := gguf_model config train_state token_cache grammar json_schema
FUZZ_BUILD   := build/fuzz
# -Wno-pass-failed: UBSan's checks on every load (alignment, null, pointer overflow) keep
# clang from vectorising the loops marked `#pragma omp simd`, and it warns about each one;
# this build looks for bugs, not speed, and the release build (gcc) still vectorises them.
FUZZ_CFLAGS  := -std=c11 -g -O1 -fopenmp -fno-omit-frame-pointer -DQUILL_BLAS_NONE \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined -Wno-pass-failed
FUZZ_LIB_O   := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(filter-out src/openblas.c,$(SRC_C)) train/config.c train/checkpoint.c train/corpus.c \
                  train/data.c train/optimizer.c)
FUZZ_SEEDS   := $(BUILD)/fuzz-seeds

$(FUZZ_BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_LIB_O)
	clang -fopenmp -fsanitize=fuzzer,address,undefined -o $@ $^ -lcjson -lxxhash -lpcre2-8 -lm

$(FUZZ_SEEDS): $(BUILD)/tests/fuzz/fuzz_seeds.o $(CMD_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(FUZZ_BUILD)/seeds/.done: $(FUZZ_SEEDS) $(wildcard configs/*.json)
	@rm -rf $(FUZZ_BUILD)/seeds && mkdir -p $(addprefix $(FUZZ_BUILD)/seeds/,$(FUZZERS))
	$(FUZZ_SEEDS) $(FUZZ_BUILD)/seeds
	cp configs/*.json $(FUZZ_BUILD)/seeds/config/
	@touch $@

fuzz: $(addprefix fuzz-run-,$(FUZZERS))

fuzz-run-%: $(FUZZ_BUILD)/fuzz_% $(FUZZ_BUILD)/seeds/.done
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/crashes
	@if $(FUZZ_BUILD)/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 \
	     -artifact_prefix=$(FUZZ_BUILD)/crashes/$*- $(FUZZ_BUILD)/corpus/$* \
	     $(FUZZ_BUILD)/seeds/$* $(wildcard tests/fuzz/regressions/$*) \
	     > $(FUZZ_BUILD)/$*.log 2>&1; then \
	  echo "fuzz $*: $$(grep -o 'Done [0-9]* runs' $(FUZZ_BUILD)/$*.log) in $(FUZZ_SECONDS) s, no failure"; \
	else \
	  tail -n 40 $(FUZZ_BUILD)/$*.log; \
	  echo "fuzz $*: FAILED; reproduce with: $(FUZZ_BUILD)/fuzz_$* $$(ls -t $(FUZZ_BUILD)/crashes/$*-* 2>/dev/null | head -n 1)"; \
	  exit 1; \
	fi

# tests/lsan.supp silences leaks inside third-party libraries (Criterion's runner). The load
# test runs the sanitized server: any report stops it (halt_on_error) and fails the test,
# which also reads the server's stderr for one. ASan keeps freed memory in a quarantine (256
# MB by default) to catch late uses of it; the load test's 16 MB keep the resident-memory
# check meaningful (a quarantine filling up is not a leak) and still catch recent frees.
SANITIZER_ENV := LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp ASAN_OPTIONS=halt_on_error=1 \
                 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
check:
	$(SANITIZER_ENV) $(MAKE) SANITIZE=1 test-unit
	$(SANITIZER_ENV) ASAN_OPTIONS=halt_on_error=1:quarantine_size_mb=16 \
	  $(MAKE) --no-print-directory SANITIZE=1 test-load

# The demo corpus is built from Debian's fortunes package: no network needed.
demo: deps bin/quill
	@test -s data/fortunes.txt || sh data/get.sh fortunes
	bin/quill train --config configs/demo.json --data data/fortunes.txt --out runs/demo --force
	bin/quill generate runs/demo/model.gguf --prompt "The meaning of life" --max-tokens 400 --temperature 0.8 --seed 42 \
	  --context-shift

# Machine peaks and throughput, then the full shakespeare-char run (nanoGPT: val loss ~1.88),
# then the inference benchmark. quill picks OpenBLAS's kernel for this CPU itself (src/openblas.c); an
# OPENBLAS_CORETYPE (or OPENBLAS_L2_SIZE) left in the environment would override that
# choice, so the benchmarks run without them, as on a user's machine.
SHAKESPEARE := $(firstword $(wildcard ../shared/data/tinyshakespeare.txt) data/tinyshakespeare.txt)
BENCH_ENV   := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
bench: deps bin/quill
	@test -s $(SHAKESPEARE) || sh data/get.sh tinyshakespeare
	$(BENCH_ENV) bin/quill bench --threads 2 --data $(SHAKESPEARE)
	@echo "== busy neighbour: shakespeare-char beside a process that keeps one core busy"
	$(BENCH_ENV) bin/quill bench configs/shakespeare-char.json --threads 2 --data $(SHAKESPEARE) \
	  --busy-neighbour
	@echo "== scaling: bench-m on 1 rank x 2 threads, then on 2 MPI ranks x 1 thread"
	$(BENCH_ENV) bin/quill bench configs/bench-m.json --threads 2 --grad-accum 2 --data $(SHAKESPEARE)
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 $(BENCH_ENV) mpirun --oversubscribe \
	  -np 2 bin/quill bench configs/bench-m.json --threads 1 --grad-accum 2 --data $(SHAKESPEARE)
	$(BENCH_ENV) bin/quill train --config configs/shakespeare-char.json --data $(SHAKESPEARE) \
	  --out runs/shakespeare-char --force --threads 2
	$(MAKE) --no-print-directory bench-inference
	$(MAKE) --no-print-directory bench-serve
	$(MAKE) --no-print-directory bench-grammar
	$(MAKE) --no-print-directory bench-finetune

# Inference in llama-bench's terms (pp128, tg64, 2 threads, median of 5) on the 134M-parameter
# benchmark model, written in F32 into a temporary directory (removed at the end) and
# quantized by quill to Q8_0, Q4_0 and Q4_K_M; each run also prints the decode bandwidth
# against the machine's and the sampler's share of a generated token; Q8_0's tg64 is measured
# once more beside a busy neighbour (quill bench --busy-neighbour).
BENCH_TYPES := Q8_0 Q4_0 Q4_K_M
# The bench model in F32 written into $$dir and quantized to each type of $(1).
bench_model = bin/quill bench --write-model $$dir/F32.gguf && \
	for t in $(1); do bin/quill quantize $$dir/F32.gguf $$dir/$$t.gguf $$t || exit 1; done
bench-inference: bin/quill
	@dir=$$(mktemp -d /tmp/quill-bench-XXXXXX) && trap 'rm -rf "$$dir"' EXIT && \
	$(call bench_model,$(BENCH_TYPES)) && \
	for t in F32 $(BENCH_TYPES); do \
	  busy=$$([ $$t = Q8_0 ] && echo --busy-neighbour); \
	  $(BENCH_ENV) bin/quill bench $$dir/$$t.gguf -p 128 -n 64 -t 2 -r 5 $$busy || exit 1; \
	done

# quill serve beside llama.cpp's llama-server (LLAMA_SERVER, built beside the checkout; quill
# alone when it is not there) on the bench model in Q8_0, 2 threads and 8 slots each:
# tests/node/serve_bench.mjs's 1, 4 and 8 streaming clients, 128-token prompts and 64 tokens
# each; aggregate tokens/s and time to first token, rounds taking turns between the servers.
LLAMA_SERVER ?= ../peers/llama.cpp/build/bin/llama-server
bench-serve: bin/quill
	@dir=$$(mktemp -d /tmp/quill-bench-XXXXXX) && trap 'rm -rf "$$dir"' EXIT && \
	$(call bench_model,Q8_0) && \
	$(BENCH_ENV) node tests/node/serve_bench.mjs --model $$dir/Q8_0.gguf --quill bin/quill \
	  --llama-server $(LLAMA_SERVER) --threads 2 --parallel 8

# Decoding with a grammar against without (tests/grammar_bench.sh: no grammar, any JSON value,
# {"story": "..."}; 128 tokens, medians of 5 interleaved rounds), in quill and in llama.cpp's
# llama-cli (LLAMA_CLI, built beside the checkout; quill alone when it is not there), on the
# bench model in Q8_0 with 2 threads; docs/grammars.md#speed has the figures.
LLAMA_CLI ?= ../peers/llama.cpp/build/bin/llama-cli
bench-grammar: bin/quill
	@dir=$$(mktemp -d /tmp/quill-bench-XXXXXX) && trap 'rm -rf "$$dir"' EXIT && \
	$(call bench_model,Q8_0) && \
	$(BENCH_ENV) sh tests/grammar_bench.sh $$dir/Q8_0.gguf bin/quill $(LLAMA_CLI)

# LoRA fine-tuning (tests/finetune_bench.sh: rank 8 on all seven projections, batch 4 x 256,
# 2 threads) on the bench model in F32 and Q8_0, beside the same step in PyTorch on the F32
# file when Debian's python3-torch is installed (quill alone when it is not; it is large, so
# `make deps` leaves it out: apt-get install -y python3-torch); tokens/s, GFLOP/s and peak
# resident memory against the file's size (/usr/bin/time, Debian's time), and the ceiling
# that the machine's sgemm peak puts on both; then the same beside a busy neighbour (PyTorch
# at its best ATen thread count alone, 1: a round of both counts took 9 minutes there).
# docs/training.md#speed-and-memory has the figures.
bench-finetune: bin/quill
	@test -s $(SHAKESPEARE) || sh data/get.sh tinyshakespeare
	@dir=$$(mktemp -d /tmp/quill-bench-XXXXXX) && trap 'rm -rf "$$dir"' EXIT && \
	$(call bench_model,Q8_0) && \
	$(BENCH_ENV) sh tests/finetune_bench.sh bin/quill $(SHAKESPEARE) $$dir/F32.gguf $$dir/Q8_0.gguf && \
	echo "== the same beside a busy neighbour, 6 steps a run (the thread governor needs a few)" && \
	BUSY=1 STEPS=6 TORCH_THREADS=1 $(BENCH_ENV) sh tests/finetune_bench.sh bin/quill $(SHAKESPEARE) $$dir/F32.gguf \
	  $$dir/Q8_0.gguf

# What a new run does with a corpus larger than memory, on a generated corpus (kept in
# /tmp/quill-bench-data between runs).
BENCH_DATA_MB ?= 1024
bench-data: deps bin/quill
	bin/quill bench-data --threads 2 --size-mb $(BENCH_DATA_MB)

clean:
	rm -rf build bin lib

# Keep the fuzz objects and binaries that pattern rules build on the way.
.SECONDARY:

-include $(shell find build -name '*.d' 2>/dev/null)
