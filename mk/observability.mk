# Tools the observability tests need (tests/e2e_observability.rs): Debian's Prometheus
# (prometheus, promtool) and Chromium with chromedriver. Installed with apt-get when missing
# (as root, `apt-get update` first); otherwise the tests fail naming what is missing.
OBS_TOOLS := /usr/bin/prometheus /usr/bin/promtool /usr/bin/chromium /usr/bin/chromedriver

.PHONY: test-tools check-rules

test-tools:
	@missing=""; for t in $(OBS_TOOLS); do [ -x $$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing prometheus chromium chromium-driver (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus chromium chromium-driver >/dev/null; \
	  else echo "missing:$$missing (apt-get install prometheus chromium chromium-driver)" >&2; exit 1; fi; \
	fi

## check-rules: promtool on the shipped Prometheus config and alert rules (also in make test)
check-rules: test-tools
	cd deploy/prometheus && promtool check config prometheus.yml && promtool test rules alerts/mcp-gateway.rules.test.yml
