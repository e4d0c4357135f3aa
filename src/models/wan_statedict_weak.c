/* wan_statedict_weak.c — weak stand-ins for the checkpoint reader (src/io/statedict.c) so the Wan model
 * links before that lands; the real definitions replace these. Remove once io/statedict.c is on main. */
#include "core/error.h"
#include "io/statedict.h"

#define WEAK __attribute__((weak))
WEAK sf_statedict *sf_statedict_open(const char *path) { sf_error("%s: checkpoint reading is not built into this sfwb", path); return NULL; }
WEAK void sf_statedict_close(sf_statedict *sd) { (void)sd; }
WEAK const char *sf_statedict_path(const sf_statedict *sd) { (void)sd; return ""; }
WEAK int sf_statedict_count(const sf_statedict *sd) { (void)sd; return 0; }
WEAK const sf_sd_entry *sf_statedict_entry(const sf_statedict *sd, int i) { (void)sd; (void)i; return NULL; }
WEAK const sf_sd_entry *sf_statedict_find(const sf_statedict *sd, const char *name) { (void)sd; (void)name; return NULL; }
WEAK sf_tensor *sf_statedict_get_entry(sf_statedict *sd, const sf_sd_entry *e) { (void)sd; (void)e; sf_error("checkpoint reading is not built in"); return NULL; }
