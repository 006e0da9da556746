# Staff GraphQL explorer (/explorer): browser assets (GraphiQL + React UMD builds)
# pinned in explorer/package-lock.json and served by kabinet/web/explorer.py.
# Included by the main Makefile:   include explorer/explorer.mk
#
# `make explorer` runs `npm ci` only when explorer/package-lock.json is newer
# than the last install (or nothing is installed yet).

EXPLORER_DIR := explorer
EXPLORER_STAMP := $(EXPLORER_DIR)/node_modules/.installed

.PHONY: explorer explorer-clean

explorer: $(EXPLORER_STAMP)

$(EXPLORER_STAMP): $(EXPLORER_DIR)/package-lock.json $(EXPLORER_DIR)/package.json
	cd $(EXPLORER_DIR) && npm ci --no-audit --no-fund
	touch $@

explorer-clean:
	rm -rf $(EXPLORER_DIR)/node_modules
