# SPDX-License-Identifier: MIT
# Mimamori bulb: the user's entry points. Every target sets itself up from the package registries.
PY      := .venv/bin/python
VENV    := .venv/.setup-done
STUBS   := .venv/stubs/.done
PORT    ?=
DEBS_MPY := libc6-i386 libglib2.0-0 libpixman-1-0 libgcrypt20 libslirp0 libfdt1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test test-esp32 test-fast demo bench server image release flash provision lint clean \
	need-port

setup: $(VENV) $(STUBS)
	@# the dashboard's browser tests drive Debian's Chromium (Playwright never downloads one)
	@# and Japanese fonts, so its screenshots of the Japanese pages show text rather than boxes
	@# the storage tests run against a real PostgreSQL too, and the multi-instance test puts
	@# nginx in front of three servers: both from Debian (tests start their own, on loopback)
	@# the firmware tests run again on a 32-bit MicroPython (../shared/tools/micropython32, it
	@# needs libc6-i386) and on an emulated ESP32 (../shared/tools/esp32-qemu, QEMU's libraries)
	@if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/opentype/noto ] \
	    || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ ! -x /usr/sbin/nginx ] \
	    || [ ! -e /lib/ld-linux.so.2 ] || ! ls /usr/lib/*/libslirp.so.0 >/dev/null 2>&1 \
	    || ! ls /usr/lib/*/libpixman-1.so.0 >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium, fonts-noto-cjk, postgresql, nginx, libc6-i386 and" \
	      "QEMU's libraries for the tests (about 1 min)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium fonts-noto-cjk postgresql nginx-light $(DEBS_MPY) >/dev/null; \
	  else \
	    echo "some tests need Debian packages: run 'sudo apt-get update && sudo apt-get install" \
	      "-y chromium fonts-noto-cjk postgresql nginx-light $(DEBS_MPY)'" \
	      "(those tests are skipped until then)"; \
	  fi; \
	fi

$(VENV): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# ESP32 type stubs live apart from the host's site-packages, so they never shadow CPython modules.
$(STUBS): $(VENV)
	$(PY) -m pip install --quiet --target .venv/stubs 'micropython-esp32-stubs>=1.24,<2'
	touch $@

# the firmware's tests run twice: on the venv's 64-bit MicroPython, then on the 32-bit v1.27
# build (an ESP32's word size; they skip, saying why, where it cannot run)
test: setup
	$(PY) -m pytest -q $(ARGS)
	MIMAMORI_MPY=32 $(PY) -m pytest -q -m firmware $(ARGS)

# the firmware on an emulated ESP32 (../shared/tools/esp32-qemu): about 5 to 15 minutes
test-esp32: setup
	$(PY) -m pytest -q -m esp32 tests/test_esp32_qemu.py $(ARGS)

# the unit tests that are not slow: no MicroPython, no browser, no server process (each test's
# kinds come from tests/conftest.py); for the edit-test loop, `make test` before a commit
test-fast: setup
	$(PY) -m pytest -q -m "unit and not slow" $(ARGS)

demo: setup
	$(PY) -m sim.demo $(if $(KEEP),--keep) $(if $(DAYS),--days $(DAYS)) $(if $(HOMES),--homes $(HOMES))

bench: setup
	$(PY) -m bench.run

server: setup
	$(PY) -m mimamori $(ARGS)

# build/partitions.bin, build/vfs.bin, build/flash.bin from tools/partitions.csv and firmware/
image: setup
	$(PY) -m tools.image

# build/release/<version>/: manifest.json + bundle.bin for `mimamori release add` (docs/ota.md)
# make release [VERSION=n] (default: the number of commits)
release: setup
	$(PY) -m tools.release $(if $(VERSION),--version $(VERSION))

# make flash PORT=/dev/ttyUSB0 [FIRMWARE=ESP32_GENERIC-....bin] [BAUD=460800] [DRY_RUN=1]
# without PORT= it says so before anything is built or downloaded
flash: $(if $(PORT),,need-port) image
	$(PY) -m tools.flash --port "$(PORT)" $(if $(FIRMWARE),--firmware "$(FIRMWARE)") \
		$(if $(BAUD),--baud $(BAUD)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

# make provision PORT=/dev/ttyUSB0 SERVER=https://... WIFI_SSID=... WIFI_PASSWORD=... | APN=...
#   TOKEN=mmr_... [HOUSEHOLD=sato] [DEVICE=bulb-x] [KEY=hex] [API=url] [TIMEOUT=180]
#   (docs/for-installers.md) not echoed: the command line holds the Wi-Fi password and the token
provision: setup
	@$(PY) -m tools.provision --port "$(PORT)" --server "$(SERVER)" \
		--wifi-ssid "$(WIFI_SSID)" --wifi-password "$(WIFI_PASSWORD)" --apn "$(APN)" \
		$(if $(DEVICE),--device "$(DEVICE)") $(if $(KEY),--key "$(KEY)") \
		$(if $(HOUSEHOLD),--household "$(HOUSEHOLD)") $(if $(TOKEN),--token "$(TOKEN)") \
		$(if $(API),--api "$(API)") $(if $(TIMEOUT),--timeout $(TIMEOUT))

need-port:
	@echo "make flash: PORT= is required, e.g. make flash PORT=/dev/ttyUSB0 (list ports with:" \
	  ".venv/bin/pyserial-ports)" >&2; exit 2

lint: setup
	$(PY) -m ruff check firmware sim tests bench tools

clean:
	rm -rf var build bench/latest.json tests/artifacts
