# A thin wrapper over Meson + Ninja.  Each target installs missing Debian
# packages first (scripts/deps.sh).
BUILD ?= build

.PHONY: all deps test test-unit demo bench install clean valgrind

all: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	ninja -C $(BUILD)

deps:
	@./scripts/deps.sh

test:
	@./scripts/test.sh

test-unit: all
	meson test -C $(BUILD) --suite unit --print-errorlogs

demo:
	@./scripts/demo.sh

bench: all
	@./scripts/deps.sh --bench
	./bench/run-all.sh

valgrind: all
	@./scripts/deps.sh --test
	TEND_VALGRIND=1 TEND_TEST_SLOW=4 meson test -C $(BUILD) --suite integration --print-errorlogs

install: all
	meson install -C $(BUILD)

clean:
	rm -rf build build-asan
