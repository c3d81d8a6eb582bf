# selfware: build, test, install.
#   make                 build (installs what the build needs)
#   make test            run every test (installs what the tests need)
#   make check           type-check and lint
#   make demo            the main job on the embedded default
#   make install         PREFIX=/usr/local DESTDIR= UNITDIR=/etc/systemd/system [SYSTEMD_VERSION=] [LLAMA_PLATFORM=]
#   make uninstall       remove exactly what install put there

PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
BINDIR      = $(PREFIX)/bin
LIBDIR      = $(PREFIX)/lib/selfware
LIBEXECDIR  = $(PREFIX)/libexec/selfware
MANDIR      = $(PREFIX)/share/man
DOCDIR      = $(PREFIX)/share/doc/selfware
NODE       ?= $(shell command -v node || echo /usr/bin/node)
NPM        ?= npm

COMMANDS    = sw-agent sw-checkpoint sw-gpu-governor sw-recover sw-report
UNITS       = $(notdir $(wildcard units/*.service units/*.timer))
SERVICE_USER ?= selfware
# systemd 254 and later space restarts themselves (RestartSteps=): a drop-in for those.
SYSTEMD_VERSION ?= $(shell systemctl --version 2>/dev/null | awk 'NR==1 {print $$2 + 0}')
# node-llama-cpp's prebuilt binaries that install keeps: this machine's
# system and architecture, as node-llama-cpp names them, not the other
# systems' that npm fetches too. On linux-x64 that is the CPU, CUDA, CUDA-ext
# and Vulkan ones. Vulkan stays: node-llama-cpp 3's gpu "auto" tries CUDA only
# where the CUDA runtime (libcudart, libcublas) is installed, so an NVIDIA box
# with the driver alone runs the model through Vulkan, or on the CPU without it.
LLAMA_PLATFORM ?= $(shell $(NODE) -p '({ darwin: "mac", win32: "win" }[process.platform] || process.platform) + "-" + ({ arm: "armv7l" }[process.arch] || process.arch)' 2>/dev/null)
# Debian packages: what the build needs, and what the tests use on top.
APT_BUILD   = git ca-certificates python3 make g++ pkg-config libsystemd-dev
APT_TEST    = restic ripgrep mandoc systemd-container exim4-daemon-light chromium prometheus

SOURCES    := $(shell find cmd lib test bench -name '*.ts' 2>/dev/null) tsconfig.json
# The two longest files (the short soak, about 7 to 11 min, and the real
# systemd, 2 to 5) first, one in each lane: started last, they would run on
# alone at the end. dist/test/runner.js keeps this order (node --test sorts
# the files it is given).
LONG_TESTS  = dist/test/soak.test.js dist/test/systemd/units.test.js
TESTS       = $(LONG_TESTS) $(filter-out $(LONG_TESTS),$(shell find dist/test -name '*.test.js' 2>/dev/null | sort))

.PHONY: all build deps deps-build deps-test test check lint demo soak install uninstall clean

all: build

# Install missing Debian packages when root; otherwise say exactly what to run.
define apt_ensure
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else \
	    echo "selfware needs these Debian packages:$$missing"; \
	    echo "run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps-build:
	$(call apt_ensure,$(APT_BUILD))

deps-test: deps-build
	$(call apt_ensure,$(APT_TEST))

deps: deps-test

node_modules/.stamp: package.json package-lock.json | deps-build
	$(NPM) install --no-audit --no-fund
	@# npm ci refuses the lock: node-llama-cpp lists optional binaries for
	@# other systems that this registry does not carry; install keeps the lock.
	@touch $@

# tsc type-checks and compiles everything (tests import lib/ from dist/);
# each command is then bundled into one CommonJS file, because Node's ES
# module loader alone costs ~35 ms at every start and checkpoints run often.
EXTERNAL    = fs-ext sql.js sd-notify node-llama-cpp yaml nodemailer
dist/.stamp: node_modules/.stamp $(SOURCES)
	./node_modules/.bin/tsc -p .
	./node_modules/.bin/esbuild $(addprefix cmd/,$(addsuffix .ts,$(COMMANDS))) --bundle --platform=node --format=cjs \
	  --target=node20 --log-level=warning $(addprefix --external:,$(EXTERNAL)) --outdir=dist/bin --out-extension:.js=.cjs
	@for c in $(COMMANDS); do chmod +x dist/bin/$$c.cjs; ln -sf $$c.cjs dist/bin/$$c; done
	@touch $@

build: dist/.stamp

# Every test has its own timeout (a minute, more where a test says why); the
# one here is per file, a backstop for the longest (the real systemd, minutes).
# Two files at a time: most wait on processes, not on a core.
test: build deps-test
	$(NODE) dist/test/runner.js $(TESTS)

lint: node_modules/.stamp
	./node_modules/.bin/eslint -c .ci/eslint.config.mjs cmd lib test bench

check: node_modules/.stamp
	./node_modules/.bin/tsc -p . --noEmit
	$(MAKE) lint

demo: build
	bash test/fixtures/demo.sh

# The soak (bench/soak): a compressed week of runs under a real systemd in a
# container, every kind of fault, checked against ground truth. As root.
# RUNS: runs at once (default: 2 for 3 simulated days or more, else 1).
DAYS   ?= 7
TASKS  ?= 10000
FAULTS ?= 200
RUNS   ?=
soak: build deps-test
	$(NODE) dist/bench/soak/soak.js --days $(DAYS) --tasks $(TASKS) --faults $(FAULTS) $(if $(RUNS),--runs $(RUNS)) $(SOAKFLAGS)

install: build
	install -d $(DESTDIR)$(LIBDIR)/dist/bin $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/selfware
	rm -rf $(DESTDIR)$(LIBDIR)/node_modules
	install -m 755 $(addprefix dist/bin/,$(addsuffix .cjs,$(COMMANDS))) $(DESTDIR)$(LIBDIR)/dist/bin/
	@# -H: node_modules may be a symlink (a worktree's); copy what it points at.
	cp -RH node_modules package.json package-lock.json $(DESTDIR)$(LIBDIR)/
	cd $(DESTDIR)$(LIBDIR) && $(NPM) prune --omit=dev --offline --no-audit --no-fund >/dev/null 2>&1
	rm -f $(DESTDIR)$(LIBDIR)/node_modules/.stamp
	@# What the commands never load: other systems' llama.cpp binaries;
	@# typescript (node-llama-cpp's optional peer, for its own CLI only, so
	@# prune keeps it); the llama.cpp sources node-llama-cpp keeps to build
	@# from source (the agent runs with build: "never"); sql.js's other builds
	@# (the commands load dist/sql-wasm.js and its .wasm); source maps and
	@# type declarations.
	@test -n "$(LLAMA_PLATFORM)" || { echo "make: LLAMA_PLATFORM is empty (is node on PATH?)" >&2; exit 1; }
	cd $(DESTDIR)$(LIBDIR)/node_modules && \
	  for d in @node-llama-cpp/*; do case "$${d#*/}" in $(LLAMA_PLATFORM)|$(LLAMA_PLATFORM)-*) ;; *) rm -rf "$$d" ;; esac; done && \
	  rm -rf typescript node-llama-cpp/llama/gitRelease.bundle && \
	  find sql.js/dist -type f ! -name sql-wasm.js ! -name sql-wasm.wasm -delete && \
	  find . -type f \( -name '*.js.map' -o -name '*.mjs.map' -o -name '*.cjs.map' -o -name '*.d.ts' -o -name '*.d.ts.map' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete && \
	  find .bin -xtype l -delete
	for c in $(COMMANDS); do \
	  printf '#!/bin/sh\nexec %s %s/dist/bin/%s.cjs "$$@"\n' '$(NODE)' '$(LIBDIR)' $$c > $(DESTDIR)$(BINDIR)/$$c; \
	  chmod 755 $(DESTDIR)$(BINDIR)/$$c; \
	done
	install -m 755 units/selfware-alert $(DESTDIR)$(LIBEXECDIR)/selfware-alert
	@# Units name the default paths; the installed ones name this install's.
	for u in $(UNITS); do \
	  sed -e 's|/usr/local/libexec/selfware|$(LIBEXECDIR)|g' -e 's|/usr/local/bin|$(BINDIR)|g' \
	      -e 's|^User=selfware$$|User=$(SERVICE_USER)|' -e 's|^Group=selfware$$|Group=$(SERVICE_USER)|' units/$$u > $(DESTDIR)$(UNITDIR)/$$u; \
	  chmod 644 $(DESTDIR)$(UNITDIR)/$$u; \
	done
	@if [ "$(SYSTEMD_VERSION)" -ge 254 ] 2>/dev/null; then \
	  install -d $(DESTDIR)$(UNITDIR)/selfware@.service.d && \
	  install -m 644 units/restart-steps.conf $(DESTDIR)$(UNITDIR)/selfware@.service.d/restart-steps.conf && \
	  echo "systemd $(SYSTEMD_VERSION): restarts spaced by RestartSteps= (selfware@.service.d/restart-steps.conf)"; \
	fi
	install -m 644 units/example.yaml $(DESTDIR)$(SYSCONFDIR)/selfware/example.yaml.sample
	install -m 644 units/example.yaml $(DESTDIR)$(DOCDIR)/example.yaml
	for m in man/*.[1-8]; do [ -f "$$m" ] || continue; s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	@# The service user, when installing for real as root (not into a DESTDIR).
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	  if ! id $(SERVICE_USER) >/dev/null 2>&1; then \
	    useradd --system --user-group --home-dir /var/lib/selfware --no-create-home --shell /usr/sbin/nologin $(SERVICE_USER) && \
	    echo "created the system user $(SERVICE_USER)"; \
	  fi; \
	  install -d -o $(SERVICE_USER) -g $(SERVICE_USER) -m 0750 /var/lib/selfware; \
	fi
	@echo "installed selfware into $(DESTDIR)$(PREFIX), units into $(DESTDIR)$(UNITDIR)"
	@echo "installed size: $$(du -sch $(INSTALLED) $$(ls -d $(DESTDIR)$(UNITDIR)/selfware@.service.d 2>/dev/null) | tail -n 1 | cut -f 1)"

# What install writes, for its size (not the whole PREFIX: /usr/local holds more).
INSTALLED = $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(DOCDIR) $(addprefix $(DESTDIR)$(BINDIR)/,$(COMMANDS)) \
  $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS)) $(DESTDIR)$(SYSCONFDIR)/selfware/example.yaml.sample \
  $(foreach m,$(wildcard man/*.[1-8]),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))

# Removes every file install wrote; the service user and the runs in
# /var/lib/selfware (files it owns) outlive an uninstall.
uninstall:
	for c in $(COMMANDS); do rm -f $(DESTDIR)$(BINDIR)/$$c; done
	for u in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	rm -f $(DESTDIR)$(UNITDIR)/selfware@.service.d/restart-steps.conf
	-rmdir $(DESTDIR)$(UNITDIR)/selfware@.service.d 2>/dev/null
	for m in man/*.[1-8]; do [ -f "$$m" ] || continue; s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$$(basename $$m); done
	rm -f $(DESTDIR)$(SYSCONFDIR)/selfware/example.yaml.sample
	-rmdir $(DESTDIR)$(SYSCONFDIR)/selfware 2>/dev/null
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(DOCDIR)
	@echo "removed selfware from $(DESTDIR)$(PREFIX)"

clean:
	rm -rf dist
